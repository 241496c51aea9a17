//! The socket side of the engine's node connections: a non-blocking connect (from a spread
//! of source addresses), reads into the node machines, writes of what they queue, and the
//! removal of a node (a churn worker connects again).

use super::{group_index, Engine, Group, Node, HS_TIMEOUT};
use login_node::client::machine::NodeMachine;
use login_node::client::unix_time;
use mio::net::TcpStream;
use mio::{Interest, Token};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Instant;

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

impl Engine {
    pub(super) fn connect(&mut self, group: Group, id: u32, worker: usize) {
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

    pub(super) fn churn_connect(&mut self, worker: usize) {
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
    pub(super) fn drop_node(&mut self, key: usize, why: Option<String>) {
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

    pub(super) fn flush(&mut self, key: usize) {
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

    pub(super) fn readable(&mut self, key: usize) {
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
}
