//! Hostile clients against a real `login-node` process over loopback. Every test states the
//! budget it holds the server to and asserts it; honest nodes must stay served throughout.
//!
//! The tests run one at a time (the `SERIAL` lock): this test process shares the 20,000
//! open-file limit with all of them, and the reconnect storm churns through ephemeral ports
//! that a concurrent server start could otherwise find taken. fd exhaustion of the server is
//! in `tests/cli.rs` (`running_out_of_file_descriptors_does_not_spin_and_recovers`).

mod common;

use common::{
    auth_frame, cpu_seconds, fd_count, http, raw_auth_code, rss_kib, ADMIN_TOKEN, REPLY, TOKEN,
};
use login_node::client::{Client, ServerMessage};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::process::{serial, Server};

/// A game node on the server, online.
trait Game {
    fn game(&self, id: u32) -> Client;
}

impl Game for Server {
    fn game(&self, id: u32) -> Client {
        common::game_node(self.addr, &game_info(id))
    }
}

fn game_info(id: u32) -> login_node::proto::GameInfo<'static> {
    common::game_info(id, "p")
}

/// A connection from source address `from` (127.0.0.x), so tests can be told apart by IP.
fn connect_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SocketAddr::from((from, 0)).into())?;
    s.connect_timeout(&to.into(), REPLY)?;
    Ok(s.into())
}

/// Heartbeat round trips of an honest node, every 10 ms for `d`; returns the slowest.
fn worst_rtt(c: &mut Client, d: Duration) -> Duration {
    let end = Instant::now() + d;
    let mut worst = Duration::ZERO;
    let mut ts = 0u64;
    while Instant::now() < end {
        ts += 1;
        let t = Instant::now();
        c.send_heartbeat(ts).expect("hb");
        loop {
            match c.recv(REPLY).expect("ack") {
                Some(ServerMessage::HeartbeatAck(got)) if got == ts => break,
                Some(_) => continue,
                None => panic!("honest node closed"),
            }
        }
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    worst
}

/// True once the server closed `s` (EOF or reset), false if it is still open at `deadline`.
fn closed_by(s: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 64];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).expect("timeout");
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// How many of `conns` the server has not closed by `deadline`.
fn still_open(conns: &mut [TcpStream], deadline: Instant) -> usize {
    conns
        .iter_mut()
        .map(|s| closed_by(s, deadline))
        .filter(|closed| !closed)
        .count()
}

/// Skips the welcome frames, then expects KICK `reason` and the close.
fn expect_kick_after_welcome(c: &mut Client, reason: u8) {
    loop {
        match c.recv(REPLY).expect("frame") {
            Some(ServerMessage::Kick(r)) => {
                assert_eq!(r, reason);
                assert!(c.closed_within(REPLY), "closed after the KICK");
                return;
            }
            Some(_) => continue,
            None => panic!("closed without KICK {reason}"),
        }
    }
}

/// Budget: 5,000 connections trickling AUTH one byte a second are all closed within
/// auth_timeout (3 s) + 1.5 s, and an honest node's heartbeat round trip stays under 100 ms
/// throughout.
#[test]
fn slowloris_auth_is_cut_at_auth_timeout_and_does_not_slow_honest_nodes() {
    let _g = serial();
    let server = Server::start(&["--auth-timeout", "3", "--log-level", "warn"]);
    let mut honest = server.game(1);
    let frame = auth_frame(2, "dev", TOKEN);
    let start = Instant::now();
    let mut slow: Vec<TcpStream> = (0..5_000)
        .map(|i| connect_from([127, 0, 1 + (i / 2_000) as u8, 1], server.addr).expect("connect"))
        .collect();
    // One byte a second each, for 2 bytes (the frame never completes), while the honest
    // node heartbeats.
    let mut worst = Duration::ZERO;
    for byte in 0..2 {
        for s in &mut slow {
            let _ = s.write_all(&frame[byte..byte + 1]);
        }
        worst = worst.max(worst_rtt(&mut honest, Duration::from_millis(900)));
    }
    let deadline = start + Duration::from_millis(4_500);
    let open = still_open(&mut slow, deadline);
    assert_eq!(open, 0, "{open} slow connections outlived auth_timeout");
    worst = worst.max(worst_rtt(&mut honest, Duration::from_millis(300)));
    eprintln!("slowloris: 5000 closed within 4.5 s; worst honest RTT {worst:?}");
    assert!(
        worst < Duration::from_millis(100),
        "honest heartbeat RTT reached {worst:?}"
    );
}

/// Budget: 10,000 connections that never send a byte are all closed within auth_timeout
/// (2 s) + 2 s; afterwards the server's descriptors are back to the baseline and its RSS
/// within 8 MiB of it (the slab and session table keep their capacity; no per-connection
/// buffer stays).
#[test]
fn ten_thousand_silent_connections_are_closed_and_memory_returns() {
    let _g = serial();
    let server = Server::start(&["--auth-timeout", "2", "--log-level", "warn"]);
    let mut honest = server.game(1);
    let base_fds = fd_count(server.pid());
    let base_rss = rss_kib(server.pid());
    let start = Instant::now();
    let mut silent: Vec<TcpStream> = (0..10_000)
        .map(|i| connect_from([127, 0, 2 + (i / 2_000) as u8, 1], server.addr).expect("connect"))
        .collect();
    let peak_rss = rss_kib(server.pid());
    let deadline = start + Duration::from_secs(4);
    let open = still_open(&mut silent, deadline);
    assert_eq!(open, 0, "{open} silent connections outlived auth_timeout");
    drop(silent);
    server.wait_for(
        "descriptors back to baseline",
        Duration::from_secs(5),
        |s| fd_count(s.pid()) <= base_fds,
    );
    let after_rss = rss_kib(server.pid());
    eprintln!(
        "silent: RSS {base_rss} KiB -> peak {peak_rss} KiB -> after {after_rss} KiB; fds {base_fds} -> {}",
        fd_count(server.pid())
    );
    assert!(
        after_rss <= base_rss + 8 * 1024,
        "RSS {base_rss} KiB -> peak {peak_rss} -> after {after_rss}"
    );
    assert!(worst_rtt(&mut honest, Duration::from_millis(100)) < Duration::from_millis(100));
}

/// Budget: a declared length over max_frame gets KICK 5 from the header alone; len < 2 gets
/// KICK 5; 200 connections each holding a 65,535-byte frame half sent cost the server at most
/// max_frame + 16 KiB each.
#[test]
fn frame_bombs_are_kicked_or_bounded_by_max_frame() {
    let _g = serial();
    let server = Server::start(&["--max-frame", "4096", "--log-level", "warn"]);
    // Over max_frame, header only (after AUTH so there is someone to KICK).
    let mut over = server.game(1);
    over.send_raw(&[0xFF, 0xFF]).expect("header");
    expect_kick_after_welcome(&mut over, 5);
    let mut short = server.game(2);
    short.send_raw(&[0x00, 0x01, 0x00]).expect("len 1");
    expect_kick_after_welcome(&mut short, 5);
    drop(server);

    let server = Server::start(&["--log-level", "warn", "--auth-timeout", "30"]);
    let before = rss_kib(server.pid());
    let half = vec![0u8; 32_768];
    let mut bombs: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).expect("connect");
            s.write_all(&[0xFF, 0xFF, 0x00, 0x01]).expect("header");
            s.write_all(&half).expect("half a frame");
            s
        })
        .collect();
    let mut honest = server.game(3);
    assert!(worst_rtt(&mut honest, Duration::from_millis(300)) < Duration::from_millis(100));
    let grown = rss_kib(server.pid()).saturating_sub(before);
    eprintln!("frame bombs: 200 half frames grew RSS by {grown} KiB");
    assert!(
        grown <= 200 * (64 + 16) + 4 * 1024,
        "200 half frames grew the server by {grown} KiB"
    );
    // One byte at a time does not change that: still held, still bounded, not kicked early.
    for s in &mut bombs {
        s.write_all(&[0]).expect("one more byte");
    }
    assert!(!closed_by(
        &mut bombs[0],
        Instant::now() + Duration::from_millis(200)
    ));
}

/// Budget: a game node that never reads while whitelist deltas pile up is dropped at the first
/// frame after its backlog passed max_write_buffer (64 KiB here); a reading node gets every
/// delta of a 4 MiB burst (the cap is on the backlog, not on one burst).
#[test]
fn a_node_that_never_reads_is_dropped_at_the_write_cap() {
    let _g = serial();
    let server = Server::start(&["--max-write-buffer", "65536", "--log-level", "warn"]);
    // The lazy node: a tiny receive buffer, and it never reads.
    let lazy = server.lazy_game_node(10);
    let mut reader = server.game(11);
    server.wait_for("both online", REPLY, |s| {
        s.metric("login_node_nodes_online{type=\"game\"}") == 2
    });
    // 4,000 deltas of ~1 KiB: about 4 MiB for each game node.
    server.add_whitelist_entries(4_000, 1000);
    let mut deltas = 0;
    while deltas < 4_000 {
        match reader.recv(REPLY).expect("delta") {
            Some(ServerMessage::WhitelistDelta { .. }) => deltas += 1,
            Some(_) => {}
            None => panic!("the reading node was closed"),
        }
    }
    // The lazy node's backlog is far past the cap now; the next frame for it drops it.
    let (status, _) = http(
        server.admin,
        "POST",
        "/api/whitelist",
        Some(ADMIN_TOKEN),
        Some(r#"{"entry": "one-more"}"#),
    );
    assert_eq!(status, 200);
    server.wait_for("the lazy node dropped", REPLY, |s| {
        s.metric("login_node_nodes_online{type=\"game\"}") == 1
    });
    assert!(
        server.log().contains("peer is not reading"),
        "{}",
        server.log()
    );
    drop(lazy);
}

/// Budget: 1,000 node ids reconnecting in a tight loop for 30 s (8 threads) leave no
/// descriptor behind and a consistent registry: afterwards no node online, no connection
/// open, the server's descriptor count back to its baseline.
#[test]
fn a_reconnect_storm_leaks_nothing() {
    let _g = serial();
    let server = Server::start(&["--log-level", "warn"]);
    let base_fds = fd_count(server.pid());
    let addr = server.addr;
    let until = Instant::now() + Duration::from_secs(30);
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            std::thread::spawn(move || {
                let mut sessions = 0u64;
                let mut id = 0u32;
                while Instant::now() < until {
                    let node = 1 + t * 125 + id % 125;
                    id += 1;
                    let Ok(mut c) = Client::connect(addr, REPLY) else {
                        continue;
                    };
                    if c.send_auth(1, node, "dev", TOKEN, None).is_err()
                        || c.send_game_info(&game_info(node)).is_err()
                    {
                        continue;
                    }
                    // Half the sessions wait for their welcome, half hang up at once.
                    if id.is_multiple_of(2) {
                        let _ = c.recv(REPLY);
                    }
                    sessions += 1;
                }
                sessions
            })
        })
        .collect();
    let sessions: u64 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    assert!(sessions > 1_000, "only {sessions} sessions in 30 s");
    eprintln!("storm: {sessions} sessions in 30 s; fds before {base_fds}");
    server.wait_for("everything closed", Duration::from_secs(10), |s| {
        s.metric("login_node_connections_open") == 0
            && s.metric("login_node_nodes_online{type=\"game\"}") == 0
    });
    let fds = fd_count(server.pid());
    assert!(
        fds <= base_fds,
        "descriptors leaked: {base_fds} before, {fds} after"
    );
    let (status, body) = http(server.admin, "GET", "/api/nodes", Some(ADMIN_TOKEN), None);
    assert_eq!((status, body.as_str()), (200, "{\"nodes\":[]}"));
}

/// Budget: after auth_fail_limit (5) bad signatures, that identity's AUTHs are closed
/// without an AUTH_RESULT, other addresses are unaffected, and the log holds at most 20
/// refusal lines a second however fast the attempts come.
#[test]
fn bad_signatures_from_one_address_are_throttled_and_the_log_does_not_flood() {
    let _g = serial();
    let server = Server::start(&["--auth-fail-limit", "5", "--auth-fail-window", "60"]);
    let attacker = [127, 0, 0, 66];
    let frame = auth_frame(7, "dev", "wrong-token");
    let mut answered = 0;
    let mut refused_early = 0;
    let start = Instant::now();
    for _ in 0..200 {
        let Ok(mut s) = connect_from(attacker, server.addr) else {
            continue;
        };
        let _ = s.write_all(&frame);
        s.set_read_timeout(Some(REPLY)).expect("timeout");
        let mut buf = [0u8; 16];
        match s.read(&mut buf) {
            Ok(n) if n > 0 => answered += 1,
            _ => refused_early += 1,
        }
    }
    let seconds = start.elapsed().as_secs() + 1;
    eprintln!("throttle: {answered} answered, {refused_early} refused at accept in {seconds} s");
    assert_eq!(answered, 5, "only the first 5 attempts are answered");
    assert_eq!(refused_early, 195);
    // An honest node elsewhere logs in at once.
    let mut honest = connect_from([127, 0, 0, 67], server.addr).expect("connect");
    let code = raw_auth_code(&mut honest, &auth_frame(8, "dev", TOKEN)).expect("AUTH_RESULT");
    assert_eq!(code, 0, "code 0 for the honest node");
    assert_eq!(server.metric("login_node_identities_blocked_total"), 1);
    assert_eq!(server.metric("login_node_addresses_blocked_total"), 0);
    assert!(server.metric("login_node_connections_throttled_total") >= 195);
    let log = server.log();
    let refusals = log.lines().filter(|l| l.contains("refused: code")).count() as u64;
    assert!(
        refusals <= 20 * seconds,
        "{refusals} refusal lines in {seconds} s"
    );
    assert!(log.contains("too many failed AUTHs"), "{log}");
    assert!(
        !log.contains("wrong-token") && !log.contains(TOKEN),
        "tokens never logged"
    );
}

/// Budget (default settings): a node with a wrong token retrying 60 times from 127.0.0.1 does
/// not stop another node on 127.0.0.1 from logging in at once; its own AUTHs past the 20th are
/// closed unanswered.
#[test]
fn a_failing_node_does_not_lock_out_its_neighbours_on_the_same_host() {
    let _g = serial();
    let server = Server::start(&[]);
    let wrong = auth_frame(7, "dev", "wrong-token");
    let mut answered = 0;
    for _ in 0..60 {
        let mut s = connect_from([127, 0, 0, 1], server.addr).expect("connect");
        if let Ok(code) = raw_auth_code(&mut s, &wrong) {
            assert_eq!(code, 1, "code 1 for the wrong token");
            answered += 1;
        }
    }
    assert_eq!(
        answered, 20,
        "answered up to auth_fail_limit, then closed unanswered"
    );
    let started = Instant::now();
    let mut neighbour = connect_from([127, 0, 0, 1], server.addr).expect("connect");
    let code = raw_auth_code(&mut neighbour, &auth_frame(8, "dev", TOKEN)).expect("AUTH_RESULT");
    assert_eq!(code, 0, "code 0 for the healthy neighbour");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(server.metric("login_node_addresses_blocked_total"), 0);
}

/// Budget: a flood of malformed AUTHs from one address is still cut off at accept, at its
/// larger per-address budget (auth_fail_limit 5 × 50 = 250), without an AUTH_RESULT.
#[test]
fn a_flood_of_malformed_auths_from_one_address_is_throttled_at_accept() {
    let _g = serial();
    let server = Server::start(&["--auth-fail-limit", "5", "--log-level", "error"]);
    let attacker = [127, 0, 0, 68];
    let malformed = [0u8, 3, 0, 1, 1];
    let mut answered = 0;
    let mut refused_early = 0;
    for _ in 0..300 {
        let Ok(mut s) = connect_from(attacker, server.addr) else {
            continue;
        };
        match raw_auth_code(&mut s, &malformed) {
            Ok(code) => {
                assert_eq!(code, 6, "code 6 for a malformed AUTH");
                answered += 1;
            }
            Err(_) => refused_early += 1,
        }
    }
    assert_eq!((answered, refused_early), (250, 50));
    assert_eq!(server.metric("login_node_addresses_blocked_total"), 1);
}

/// Budget: the admin port answers 413 to an oversized request, 400 to garbage, 401 without
/// or with a wrong token, and closes slow headers at its 10 s request deadline, while the
/// node port keeps answering heartbeats within 100 ms.
#[test]
fn hostile_admin_clients_are_answered_and_cut_off() {
    let _g = serial();
    let server = Server::start(&["--log-level", "warn"]);
    let mut honest = server.game(1);
    let big = format!(
        "POST /api/whitelist HTTP/1.1\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: 99999999\r\n\r\n"
    );
    assert_eq!(
        common::parse_response(&common::exchange(server.admin, big.as_bytes())).0,
        413
    );
    let garbage = [0x16, 0x03, 0x01, 0x02, 0x00, b'\r', b'\n', b'\r', b'\n'];
    assert_eq!(
        common::parse_response(&common::exchange(server.admin, &garbage)).0,
        400
    );
    assert_eq!(http(server.admin, "GET", "/api/nodes", None, None).0, 401);
    assert_eq!(
        http(server.admin, "GET", "/api/nodes", Some("nope"), None).0,
        401
    );
    let mut slow = TcpStream::connect(server.admin).expect("connect");
    slow.write_all(b"GET /api/nodes HTTP/1.1\r\nHo")
        .expect("write");
    let start = Instant::now();
    assert!(worst_rtt(&mut honest, Duration::from_millis(500)) < Duration::from_millis(100));
    assert!(closed_by(&mut slow, start + Duration::from_secs(15)));
    assert!(
        start.elapsed() >= Duration::from_secs(9),
        "closed at the deadline, not before"
    );
    let used = cpu_seconds(server.pid());
    assert!(used < 1.0, "the server used {used} s of CPU in ~11 s");
}
