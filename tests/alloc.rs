//! A heartbeat round trip allocates nothing once warm: read, decode, refresh, encode the
//! ACK, write. Counted with a global allocator, on the threads that opt in (the test's and
//! the server's): the test harness's own threads allocate when they like.

use login_node::cluster::{Cluster, ConnId, NoHandler, Now, Outbox};
use login_node::proto::{auth, Auth, GameInfo, Heartbeat};
use login_node::{Config, LoginNode};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // Const-initialised, no destructor: safe to read from inside the allocator.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts this thread's allocations from now on.
fn count_this_thread() {
    COUNTED.with(|c| c.set(true));
}

// SAFETY: every method forwards its arguments unchanged to the system allocator, which
// upholds the GlobalAlloc contract; counting touches only an atomic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded as received (see the impl).
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded as received.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded as received.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::SeqCst)
}

const TOKEN: &str = "alloc-test";

fn handshake_frames(id: u32, unix: u32) -> Vec<u8> {
    let mut f = Vec::new();
    let sign = auth::sign(id, unix, TOKEN.as_bytes());
    Auth {
        node_type: 1,
        node_id: id,
        plat: "p",
        time: unix,
        sign,
    }
    .encode(&mut f)
    .expect("fits");
    GameInfo {
        serv_id: id,
        serv_name: "S",
        open_time: 0,
        cross_plat: "p",
        cross_server_id: 0,
        cross_pos: 0,
        addr: "",
    }
    .encode(&mut f)
    .expect("fits");
    f
}

/// Keeps the last frame in a buffer that never grows past its first capacity.
struct Sink(Vec<u8>);

impl Outbox for Sink {
    fn send(&mut self, _conn: ConnId, frame: &[u8]) {
        self.0.clear();
        self.0.extend_from_slice(frame);
    }
    fn close(&mut self, _conn: ConnId) {}
}

#[test]
fn a_warm_heartbeat_round_trip_allocates_nothing() {
    // 1. The cluster alone.
    let config = Config {
        token: TOKEN.into(),
        ..Config::default()
    };
    let unix = 1_700_000_000u32;
    let mut now = Now {
        mono_ms: 0,
        unix_secs: unix as u64,
    };
    count_this_thread();
    let mut cluster = Cluster::new(&config, now);
    let mut out = Sink(Vec::with_capacity(4096));
    cluster.open(0, "127.0.0.1:1".parse().expect("addr"), now);
    let frames = handshake_frames(1, unix);
    let mut at = 0;
    while let Ok(Some((payload, used))) = login_node::proto::parse_frame(&frames[at..], 65535) {
        cluster.handle_frame(0, payload, now, &mut out, &mut NoHandler);
        at += used;
    }
    let mut hb = Vec::new();
    Heartbeat { ts: 5 }.encode(&mut hb);
    for _ in 0..1_000 {
        now.mono_ms += 1;
        cluster.handle_frame(0, &hb[2..], now, &mut out, &mut NoHandler);
        cluster.handle_timeout(now, &mut out, &mut NoHandler);
    }
    let before = allocations();
    for _ in 0..10_000 {
        now.mono_ms += 1;
        cluster.handle_frame(0, &hb[2..], now, &mut out, &mut NoHandler);
        cluster.handle_timeout(now, &mut out, &mut NoHandler);
    }
    assert_eq!(
        allocations() - before,
        0,
        "cluster: allocations in 10,000 heartbeats"
    );
    assert_eq!(
        &out.0[..4],
        &[0, 10, 0x80, 0x04],
        "the last thing sent is an ACK"
    );

    // 2. The whole node over a real socket (the client side uses fixed buffers only).
    let node_config = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        token: TOKEN.into(),
        state_dir: None,
        admin_listen: None,
        ..Config::default()
    };
    let mut node = LoginNode::bind(node_config).expect("bind");
    let addr = node.local_addr();
    let stop = node.shutdown_handle();
    let server = std::thread::spawn(move || {
        count_this_thread();
        node.run()
    });
    let mut sock = std::net::TcpStream::connect(addr).expect("connect");
    sock.set_nodelay(true).expect("nodelay");
    let unix = login_node::client::unix_time();
    sock.write_all(&handshake_frames(2, unix))
        .expect("handshake");
    // AUTH_RESULT (13) + STATUS_PUSH (5) + WHITELIST_SNAPSHOT (11).
    let mut greeting = [0u8; 29];
    sock.read_exact(&mut greeting).expect("greeting");
    assert_eq!(greeting[4], 0, "auth ok");
    let mut ack = [0u8; 12];
    let mut round_trip = |sock: &mut std::net::TcpStream| {
        sock.write_all(&hb).expect("heartbeat");
        sock.read_exact(&mut ack).expect("ack");
        assert_eq!(&ack[..4], &[0, 10, 0x80, 0x04]);
    };
    for _ in 0..1_000 {
        round_trip(&mut sock);
    }
    let before = allocations();
    for _ in 0..10_000 {
        round_trip(&mut sock);
    }
    let during = allocations() - before;
    stop.shutdown();
    server.join().expect("server thread").expect("clean stop");
    assert_eq!(
        during, 0,
        "server: allocations in 10,000 heartbeat round trips over a socket"
    );
}
