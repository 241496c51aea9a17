//! The load engine: one mio poll loop driving many [`NodeMachine`]s, with heartbeat schedules
//! on login-node's own timer wheel. Groups of connections run at once: cross nodes (brought up
//! first), `hold` nodes (heartbeat at the interval), `pump` nodes (K heartbeats in flight) and
//! `churn` workers (connect, auth, info, close, again).

use crate::hist::Hist;
use login_node::client::machine::{NodeEvent, NodeInfoSpec, NodeMachine, NodeSpec};
use login_node::client::{unix_time, ServerMessage};
use login_node::timer::TimerWheel;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
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

/// Server (CPU seconds, RSS bytes) samples: at the ramp's start and end, and CPU seconds at
/// the window's start and end.
#[derive(Default, Clone, Copy, Debug)]
pub struct ServerSamples {
    pub ramp: Option<((f64, i64), (f64, i64))>,
    pub window: Option<(f64, f64)>,
}

/// Everything measured.
#[derive(Default)]
pub struct Stats {
    pub handshake: Hist,
    pub handshakes: u64,
    pub ramp_secs: f64,
    pub rtt: Hist,
    pub acks: u64,
    pub window_secs: f64,
    pub session: Hist,
    pub sessions: u64,
    pub failures: BTreeMap<String, u64>,
    pub server_cpu_us_handshakes: Option<f64>,
    pub server_cpu_us_window: Option<f64>,
    pub server_rss_growth: Option<i64>,
    /// The raw server samples behind those figures, so worker processes' can be merged.
    pub server_samples: ServerSamples,
    pub online_at_end: u64,
}

impl Stats {
    fn fail(&mut self, kind: impl Into<String>) {
        *self.failures.entry(kind.into()).or_default() += 1;
    }

    pub fn failure_count(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// A non-blocking connect, from `src` (port chosen by the kernel) when given.
fn open_socket(addr: SocketAddr, src: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    sock.set_nonblocking(true)?;
    sock.set_nodelay(true)?;
    if let Some(ip) = src {
        // Let connect() choose the port for the whole 4-tuple; choosing it at bind time must
        // avoid every port in use towards any peer (TIME_WAIT included) and slows to a crawl.
        let one: libc::c_int = 1;
        // SAFETY: the fd is a valid socket owned by `sock`; the option value is a c_int that
        // lives across the call, and its size is passed.
        unsafe {
            use std::os::fd::AsRawFd;
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        sock.bind(&SocketAddr::V4(SocketAddrV4::new(ip, 0)).into())?;
    }
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(sock.into()))
}

/// CPU seconds and RSS bytes of a process, from /proc.
pub fn sample_process(pid: u32) -> Option<(f64, i64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let cpu = (f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: i64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((cpu, rss_kb * 1024))
}

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

    fn spec(&self, group: Group, id: u32) -> NodeSpec {
        let info = match group {
            Group::Cross => NodeInfoSpec::Cross {
                cross_plat: self.plat_name(),
                cross_server_id: id,
                cross_node_name: format!("cross{id}@127.0.0.1"),
                capacity: self.plan.cross_capacity,
                game_server_list: Vec::new(),
            },
            _ => NodeInfoSpec::Game {
                serv_name: format!("S{id}"),
                open_time: 1_700_000_000,
                cross_plat: self.plat_name(),
                cross_server_id: 0,
                cross_pos: 0,
                addr: format!("10.0.{}.{}:8000", id / 256 % 256, id % 256),
            },
        };
        NodeSpec {
            node_id: id,
            plat: self.plan.plat.clone(),
            token: self.plan.token.clone(),
            info,
        }
    }

    fn plat_name(&self) -> String {
        self.plan.plat.clone()
    }

    fn connect(&mut self, group: Group, id: u32, worker: usize) {
        let src = (self.plan.src_ips > 0).then(|| {
            Ipv4Addr::new(
                127,
                0,
                0,
                2 + (self.connects % self.plan.src_ips as u64) as u8,
            )
        });
        self.connects += 1;
        let mut stream = match open_socket(self.plan.addr, src) {
            Ok(s) => s,
            Err(e) => {
                self.stats.fail(format!("connect: {}", e.kind()));
                if group == Group::Churn {
                    // Try again shortly rather than spin on a persistent error.
                    let at = self.now_ms() + 100;
                    self.wheel.insert(at, (usize::MAX, worker as u32, 2));
                }
                return;
            }
        };
        let spec = self.spec(group, id);
        let entry = self.nodes.vacant_entry();
        let key = entry.key();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.stats.fail(format!("register: {}", e.kind()));
            return;
        }
        self.gen = self.gen.wrapping_add(1);
        entry.insert(Node {
            stream,
            m: NodeMachine::new(spec, unix_time(), false),
            group,
            gen: self.gen,
            started: Instant::now(),
            online: false,
            worker,
            unacked: VecDeque::new(),
        });
        self.handshaking += 1;
        if group == Group::Churn {
            self.churn_handshaking += 1;
        }
        let deadline = self.now_ms() + self.plan.hs_timeout.as_millis() as u64;
        self.wheel.insert(deadline, (key, self.gen, HS_TIMEOUT));
    }

    fn churn_connect(&mut self, worker: usize) {
        let w = self.plan.churn_workers.max(1) as u32;
        let round = self.worker_round[worker];
        self.worker_round[worker] = (round + 1) % self.plan.ids_per_worker.max(1);
        let id = self.plan.id_base
            + (self.plan.hold_nodes + self.plan.pump_nodes) as u32
            + worker as u32
            + round * w;
        self.connect(Group::Churn, id, worker);
    }

    /// Removes a node; `expected` means we closed it on purpose.
    fn drop_node(&mut self, key: usize, why: Option<String>) {
        if !self.nodes.contains(key) {
            return;
        }
        let node = self.nodes.remove(key);
        if !node.online {
            self.handshaking -= 1;
            if node.group == Group::Churn {
                self.churn_handshaking -= 1;
            }
        } else {
            self.online[group_index(node.group)] -= 1;
        }
        if let Some(why) = why {
            self.stats.fail(why);
        }
        if node.group == Group::Churn && !self.finished() {
            self.churn_connect(node.worker);
        }
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

    fn flush(&mut self, key: usize) {
        let Some(n) = self.nodes.get_mut(key) else {
            return;
        };
        loop {
            let out = n.m.transmit();
            if out.is_empty() {
                return;
            }
            match n.stream.write(out) {
                Ok(k) => n.m.advance_transmit(k),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return, // still connecting
                Err(e) => {
                    let why = format!("write: {}", e.kind());
                    self.drop_node(key, Some(why));
                    return;
                }
            }
        }
    }

    fn readable(&mut self, key: usize) {
        let now_ms = self.now_ms();
        loop {
            let Some(n) = self.nodes.get_mut(key) else {
                return;
            };
            match n.stream.read(&mut self.buf) {
                Ok(0) => {
                    let closed_by_server = !n.m.is_closed();
                    self.drop_node(
                        key,
                        closed_by_server.then(|| "closed by server".to_string()),
                    );
                    return;
                }
                Ok(k) => {
                    n.m.handle_input(&self.buf[..k], now_ms);
                    self.events(key);
                    if k < self.buf.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let why = format!("read: {}", e.kind());
                    self.drop_node(key, Some(why));
                    return;
                }
            }
        }
        self.flush(key);
    }

    fn events(&mut self, key: usize) {
        loop {
            let Some(n) = self.nodes.get_mut(key) else {
                return;
            };
            let Some(ev) = n.m.poll_event() else { return };
            let group = n.group;
            match ev {
                NodeEvent::Authenticated { .. } => {}
                NodeEvent::AuthRejected(code) => {
                    return self.drop_node(key, Some(format!("auth rejected: code {code}")))
                }
                NodeEvent::Kicked(reason) => {
                    return self.drop_node(key, Some(format!("kicked: reason {reason}")))
                }
                NodeEvent::ProtocolError(e) => {
                    return self.drop_node(key, Some(format!("protocol error: {e}")))
                }
                NodeEvent::Message(msg) => {
                    let awaits_assign = self.plan.await_assign || self.plan.cross_nodes > 0;
                    let now_online = match (&msg, group) {
                        (ServerMessage::CrossMembers(_), Group::Cross) => true,
                        (
                            ServerMessage::CrossAssign { .. },
                            Group::Hold | Group::Pump | Group::Churn,
                        ) => awaits_assign,
                        (
                            ServerMessage::WhitelistSnapshot { last: true, .. },
                            Group::Hold | Group::Pump | Group::Churn,
                        ) => !awaits_assign,
                        _ => false,
                    };
                    if let ServerMessage::HeartbeatAck(ts) = msg {
                        self.ack(key, ts);
                    }
                    if now_online && !self.nodes[key].online {
                        self.came_online(key);
                    }
                }
            }
        }
    }

    /// Sends a heartbeat and remembers its ts for the ACK.
    fn beat(&mut self, key: usize, ts: u64) {
        let n = &mut self.nodes[key];
        n.m.send_heartbeat(ts);
        n.unacked.push_back(ts);
    }

    /// An ACK counts only if it echoes the oldest unanswered heartbeat's ts.
    fn ack(&mut self, key: usize, ts: u64) {
        let now = self.now_ns();
        match self.nodes[key].unacked.pop_front() {
            Some(sent) if sent == ts => {
                if self.in_window() {
                    self.stats.rtt.record(now.saturating_sub(ts));
                    self.stats.acks += 1;
                }
            }
            Some(_) => self.stats.fail("heartbeat ACK echoed a wrong ts"),
            None => self.stats.fail("heartbeat ACK without a heartbeat"),
        }
        if self.nodes[key].group == Group::Pump && !self.draining {
            self.beat(key, now);
        }
    }

    /// Heartbeats still unanswered, counted once as failures and forgotten.
    fn count_unanswered(&mut self) {
        let mut missing = 0;
        for (_, n) in self.nodes.iter_mut() {
            missing += n.unacked.len() as u64;
            n.unacked.clear();
        }
        if missing > 0 {
            *self
                .stats
                .failures
                .entry(format!(
                    "heartbeat never ACKed (within {} s of the end)",
                    ACK_GRACE.as_secs()
                ))
                .or_default() += missing;
        }
    }

    fn came_online(&mut self, key: usize) {
        let n = &mut self.nodes[key];
        n.online = true;
        let took = n.started.elapsed();
        let group = n.group;
        self.handshaking -= 1;
        if group == Group::Churn {
            self.churn_handshaking -= 1;
        }
        self.online[group_index(group)] += 1;
        match group {
            Group::Cross => self.crosses_online += 1,
            Group::Hold | Group::Pump => {
                self.stats.handshake.record(took.as_nanos() as u64);
                self.stats.handshakes += 1;
            }
            Group::Churn => {}
        }
        match group {
            Group::Cross | Group::Hold => {
                let interval = self.hold_interval_ms(key);
                let gen = self.nodes[key].gen;
                // Spread first heartbeats over the interval (by the node's own generation, a
                // Fibonacci hash) so nodes do not beat in lockstep.
                let phase = (gen as u64).wrapping_mul(2_654_435_761) % interval.max(1);
                self.wheel
                    .insert(self.now_ms() + phase, (key, gen, HEARTBEAT));
            }
            Group::Pump => {
                let now = self.now_ns();
                for _ in 0..self.plan.pipeline {
                    self.beat(key, now);
                }
            }
            Group::Churn => {
                if self.in_window() {
                    self.stats.session.record(took.as_nanos() as u64);
                    self.stats.sessions += 1;
                }
                // Done: close and go again (a new node connects in drop_node).
                self.drop_node(key, None);
            }
        }
    }

    fn hold_interval_ms(&self, key: usize) -> u64 {
        match self.plan.hold_interval {
            Some(d) => d.as_millis() as u64,
            None => self
                .nodes
                .get(key)
                .map_or(1000, |n| n.m.heartbeat_interval_ms())
                .max(1),
        }
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

    /// Starts connections up to the in-flight cap, crosses first.
    fn ramp(&mut self) {
        while self.crosses_started < self.plan.cross_nodes && self.handshaking < self.plan.inflight
        {
            let id = self.plan.id_base.wrapping_sub(1_000_000) + self.crosses_started as u32;
            self.crosses_started += 1;
            self.connect(Group::Cross, id, 0);
        }
        if self.crosses_online < self.plan.cross_nodes {
            return;
        }
        if self.ramp_start.is_none() {
            self.ramp_start = Some(Instant::now());
            self.server_at_ramp = self.plan.server_pid.and_then(sample_process);
            for w in 0..self.plan.churn_workers {
                self.churn_connect(w);
            }
        }
        while self.handshaking < self.plan.inflight
            && (self.next_hold < self.plan.hold_nodes || self.next_pump < self.plan.pump_nodes)
        {
            if self.next_hold < self.plan.hold_nodes {
                let id = self.plan.id_base + self.next_hold as u32;
                self.next_hold += 1;
                self.connect(Group::Hold, id, 0);
            } else {
                let id = self.plan.id_base + (self.plan.hold_nodes + self.next_pump) as u32;
                self.next_pump += 1;
                self.connect(Group::Pump, id, 0);
            }
        }
        let everyone = self.plan.hold_nodes + self.plan.pump_nodes;
        let settled = self.next_hold + self.next_pump == everyone
            && self.handshaking <= self.churn_handshaking;
        if settled && self.window_start.is_none() {
            let done = Instant::now();
            self.ramp_done = Some(done);
            self.stats.ramp_secs = self
                .ramp_start
                .map_or(0.0, |s| done.duration_since(s).as_secs_f64());
            let sample = self.plan.server_pid.and_then(sample_process);
            self.stats.server_samples.ramp = self.server_at_ramp.zip(sample);
            if let (Some((c0, r0)), Some((c1, r1))) = (self.server_at_ramp, sample) {
                if self.stats.handshakes > 0 {
                    self.stats.server_cpu_us_handshakes =
                        Some((c1 - c0) * 1e6 / self.stats.handshakes as f64);
                }
                self.stats.server_rss_growth = Some(r1 - r0);
            }
            self.window_start = Some(done);
            if let Some(flag) = &self.window_open {
                flag.store(true, std::sync::atomic::Ordering::Release);
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
