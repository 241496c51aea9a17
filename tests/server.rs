//! The whole node over real loopback sockets: an embedded server and the public client.

mod common;

use common::*;
use login_node::client::{unix_time, ServerMessage};
use login_node::config::DuplicatePolicy;
use login_node::proto::{cmd, Auth, Heartbeat, NodeType};
use login_node::{Context, Handler, NodeKey};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

#[test]
fn auth_ok_and_heartbeat_echo() {
    let server = start(config());
    let mut c = server.connect();
    let r = c
        .auth(NodeType::Game, 1001, "dev", TOKEN, None)
        .expect("auth");
    assert_eq!(
        (r.code, r.heartbeat_interval, r.heartbeat_timeout),
        (0, 1, 30)
    );
    assert!(
        (r.server_time as i64 - unix_time() as i64).abs() <= 2,
        "server_time is the real clock"
    );
    // Heartbeat answered before INFO too.
    c.send_heartbeat(7).expect("hb");
    assert_eq!(
        c.recv(REPLY).expect("ack"),
        Some(ServerMessage::HeartbeatAck(7))
    );
    c.send_game_info(&game_info(1001, "p")).expect("info");
    assert_eq!(
        c.recv(REPLY).expect("status"),
        Some(ServerMessage::StatusPush(0))
    );
    assert_eq!(
        c.recv(REPLY).expect("snapshot"),
        Some(ServerMessage::WhitelistSnapshot {
            version: 0,
            last: true,
            entries: vec![]
        })
    );
    for ts in [0, 1_700_000_000_123, u64::MAX] {
        c.send_heartbeat(ts).expect("hb");
        assert_eq!(
            c.recv(REPLY).expect("ack"),
            Some(ServerMessage::HeartbeatAck(ts))
        );
    }
    server.stop().expect("clean stop");
}

#[test]
fn every_auth_failure_code_closes_the_connection() {
    let server = start(common::Config {
        duplicate_policy: DuplicatePolicy::Reject,
        ..config()
    });
    let _online = server.game(1, "p");
    let now = unix_time();
    let attempts: Vec<(&str, u8, u32, &str, u32, u8)> = vec![
        ("bad signature", 1, 2, "wrong-token", now, 1),
        ("time too old", 1, 2, TOKEN, now - 400, 2),
        ("time in the future", 1, 2, TOKEN, now + 400, 2),
        ("duplicate rejected", 1, 1, TOKEN, now, 3),
        ("unknown node type", 9, 2, TOKEN, now, 6),
    ];
    for (what, node_type, id, token, time, code) in attempts {
        let mut c = server.connect();
        c.send_auth(node_type, id, "dev", token, Some(time))
            .expect("send");
        match c.recv(REPLY).expect(what) {
            Some(ServerMessage::AuthResult(r)) => {
                assert_eq!(r.code, code, "{what}");
                assert_eq!(
                    (r.heartbeat_interval, r.heartbeat_timeout),
                    (1, 30),
                    "{what}: failures carry the real fields"
                );
            }
            other => panic!("{what}: {other:?}"),
        }
        assert!(c.closed_within(REPLY), "{what}: closed");
    }
    // Malformed AUTH (truncated sign): code 6.
    let mut c = server.connect();
    let mut frame = Vec::new();
    Auth {
        node_type: 1,
        node_id: 3,
        plat: "dev",
        time: now,
        sign: [0; 16],
    }
    .encode(&mut frame)
    .expect("fits");
    frame.truncate(frame.len() - 1);
    frame[1] -= 1;
    c.send_raw(&frame).expect("send");
    assert!(
        matches!(c.recv(REPLY).expect("result"), Some(ServerMessage::AuthResult(r)) if r.code == 6)
    );
    assert!(c.closed_within(REPLY));
}

#[test]
fn server_full_is_code_5_and_frees_up_when_a_connection_closes() {
    let server = start(common::Config {
        max_connections: 2,
        ..config()
    });
    let _a = server.game(1, "p");
    let mut waiting = server.connect();
    // The third connection: the server accepts it in order after `waiting`, so when its AUTH
    // is read three connections are open, over the limit of 2.
    let mut third = server.connect();
    let r = third
        .auth(NodeType::Game, 3, "dev", TOKEN, None)
        .expect("auth");
    assert_eq!(r.code, 5);
    assert!(third.closed_within(REPLY));
    // The server closed it in the same turn: two open again, so this one fits.
    let r = waiting
        .auth(NodeType::Game, 2, "dev", TOKEN, None)
        .expect("auth");
    assert_eq!(r.code, 0);
}

#[test]
fn duplicate_login_replaces_the_old_connection() {
    let server = start(config());
    let mut old = server.game(5, "p");
    let mut new = server.game(5, "p");
    expect_kick(&mut old, 1);
    new.send_heartbeat(1).expect("hb");
    assert_eq!(
        new.recv(REPLY).expect("ack"),
        Some(ServerMessage::HeartbeatAck(1))
    );
}

#[test]
fn silent_node_is_kicked_between_timeout_and_timeout_plus_one_second() {
    let server = start(common::Config {
        heartbeat_interval: 1,
        heartbeat_timeout: 2,
        ..config()
    });
    let mut c = server.game(9, "p");
    c.send_heartbeat(1).expect("hb");
    let last_frame = Instant::now();
    assert_eq!(
        c.recv(REPLY).expect("ack"),
        Some(ServerMessage::HeartbeatAck(1))
    );
    assert_eq!(
        c.recv(Duration::from_secs(4)).expect("kick"),
        Some(ServerMessage::Kick(2))
    );
    let silent = last_frame.elapsed();
    assert!(
        silent >= Duration::from_secs(2),
        "kicked early after {silent:?}"
    );
    assert!(
        silent <= Duration::from_secs(3),
        "kicked late after {silent:?}"
    );
    assert!(c.closed_within(REPLY));
    // The node left the registry: it can log in again without being a duplicate.
    let _again = server.game(9, "p");
}

#[test]
fn heartbeats_keep_a_node_alive() {
    let server = start(common::Config {
        heartbeat_interval: 1,
        heartbeat_timeout: 2,
        ..config()
    });
    let mut c = server.game(9, "p");
    let until = Instant::now() + Duration::from_millis(3_500);
    let mut ts = 0;
    while Instant::now() < until {
        ts += 1;
        c.send_heartbeat(ts).expect("hb");
        assert_eq!(
            c.recv(REPLY).expect("ack"),
            Some(ServerMessage::HeartbeatAck(ts)),
            "alive past the timeout"
        );
        std::thread::sleep(Duration::from_millis(500)); // the node's heartbeat interval
    }
}

#[test]
fn connection_without_auth_is_closed_at_auth_timeout() {
    let server = start(common::Config {
        auth_timeout_ms: 300,
        ..config()
    });
    let mut c = server.connect();
    let t = Instant::now();
    assert!(c.closed_within(Duration::from_secs(3)));
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(290),
        "closed early: {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(1_500),
        "closed late: {waited:?}"
    );
}

#[test]
fn allocation_across_two_cross_nodes_and_the_waiting_queue() {
    let server = start(config());
    let (mut cross_a, members) = server.cross(1, "p", 10, 2);
    assert!(members.is_empty());
    let (mut cross_b, _) = server.cross(2, "p", 20, 1);
    // 10 has 2 free, 20 has 1: most free first.
    let mut g1 = server.game(101, "p");
    assert_eq!(expect_assign(&mut g1), (10, 1));
    assert_eq!(expect_members(&mut cross_a), [(101, String::new(), 1)]);
    // Tie (1 free each): lowest cross_server_id.
    let mut g2 = server.game(102, "p");
    assert_eq!(expect_assign(&mut g2), (10, 2));
    let mut g3 = server.game(103, "p");
    assert_eq!(expect_assign(&mut g3), (20, 1));
    // Full: the next two wait, in arrival order.
    let mut g4 = server.game(104, "p");
    let mut g5 = server.game(105, "p");
    expect_quiet(&mut g4, Duration::from_millis(200));
    // A cross node of another platform does not help.
    let (_other, _) = server.cross(3, "q", 30, 5);
    expect_quiet(&mut g4, Duration::from_millis(200));
    // Capacity appears in p: the first waiter gets it, then the second.
    let (mut cross_c, members) = server.cross(4, "p", 40, 1);
    assert_eq!(members, [(104, String::new(), 1)]);
    let full = g4.recv(REPLY).expect("assign");
    assert!(
        matches!(&full, Some(ServerMessage::CrossAssign { cross_server_id: 40, cross_node_name, cross_plat, cross_pos: 1 })
            if cross_node_name == "cross40@127.0.0.1" && cross_plat == "p"),
        "{full:?}"
    );
    expect_quiet(&mut g5, Duration::from_millis(200));
    drop(cross_c.stream().shutdown(std::net::Shutdown::Both));
    let (_d, _) = server.cross(5, "p", 50, 3);
    assert_eq!(expect_assign(&mut g5), (50, 1));
    let _ = (&mut cross_b, &mut g2, &mut g3);
}

#[test]
fn a_returning_game_node_keeps_its_slot() {
    let server = start(config());
    let (_cross, _) = server.cross(1, "p", 10, 4);
    let mut g = server.game(7, "p");
    assert_eq!(expect_assign(&mut g), (10, 1));
    let _other = server.game(8, "p");
    drop(g);
    let mut g = server.game(7, "p");
    assert_eq!(expect_assign(&mut g), (10, 1));
}

#[test]
fn protocol_errors_get_kick_5() {
    let server = start(common::Config {
        max_frame: 1024,
        ..config()
    });
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("len 0", vec![0, 0]),
        ("len 1", vec![0, 1, 7]),
        // Only the header: the server must not wait for a body it will never accept.
        ("len over max_frame", vec![0xea, 0x60]),
        ("heartbeat first", {
            let mut v = Vec::new();
            Heartbeat { ts: 1 }.encode(&mut v);
            v
        }),
    ];
    for (what, bytes) in cases {
        let mut c = server.connect();
        c.send_raw(&bytes).expect("send");
        assert_eq!(
            c.recv(REPLY).expect(what),
            Some(ServerMessage::Kick(5)),
            "{what}"
        );
        assert!(c.closed_within(REPLY), "{what}");
    }
    // After INFO: a server-side command and STATUS_REPORT from a cross node.
    let mut g = server.game(1, "p");
    g.send_raw(&[0, 2, 0x80, 0x04]).expect("send");
    expect_kick(&mut g, 5);
    let (mut x, _) = server.cross(2, "p", 2, 1);
    x.send_status(5).expect("send");
    expect_kick(&mut x, 5);
}

#[test]
fn frames_split_at_every_byte_and_coalesced() {
    let server = start(config());
    let mut c = server.connect();
    let mut bytes = Vec::new();
    let time = unix_time();
    let sign = login_node::proto::auth::sign(42, time, TOKEN.as_bytes());
    Auth {
        node_type: 1,
        node_id: 42,
        plat: "dev",
        time,
        sign,
    }
    .encode(&mut bytes)
    .expect("fits");
    for b in &bytes {
        c.send_raw(&[*b]).expect("byte");
        c.stream().flush().expect("flush");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        matches!(c.recv(REPLY).expect("auth"), Some(ServerMessage::AuthResult(r)) if r.code == 0)
    );
    // INFO and three heartbeats in one write.
    let mut burst = Vec::new();
    common::game_info(42, "p").encode(&mut burst).expect("fits");
    for ts in 1..=3 {
        Heartbeat { ts }.encode(&mut burst);
    }
    c.send_raw(&burst).expect("burst");
    assert_eq!(
        c.recv(REPLY).expect("status"),
        Some(ServerMessage::StatusPush(0))
    );
    assert!(matches!(
        c.recv(REPLY).expect("snapshot"),
        Some(ServerMessage::WhitelistSnapshot { .. })
    ));
    for ts in 1..=3 {
        assert_eq!(
            c.recv(REPLY).expect("ack"),
            Some(ServerMessage::HeartbeatAck(ts))
        );
    }
}

#[test]
fn application_commands_without_a_handler_are_ignored() {
    let server = start(config());
    let mut g = server.game(1, "p");
    g.send_app(0x1234, b"hello").expect("app");
    g.send_heartbeat(3).expect("hb");
    assert_eq!(
        g.recv(REPLY).expect("ack"),
        Some(ServerMessage::HeartbeatAck(3)),
        "still connected, nothing else sent"
    );
}

/// Relays application command 0x2000 from any node to game node 2.
struct Relay;

impl Handler for Relay {
    fn app_command(&mut self, ctx: &mut Context<'_>, _from: NodeKey, command: u16, body: &[u8]) {
        if command == 0x2000 {
            let _ = ctx.send(
                NodeKey {
                    node_type: NodeType::Game,
                    node_id: 2,
                },
                command,
                body,
            );
        }
    }
}

#[test]
fn an_embedded_handler_sees_application_commands() {
    let server = start_with(config(), Relay);
    let mut a = server.game(1, "p");
    let mut b = server.game(2, "p");
    a.send_app(0x2000, b"relay me").expect("app");
    assert_eq!(
        b.recv(REPLY).expect("relayed"),
        Some(ServerMessage::App {
            cmd: 0x2000,
            body: b"relay me".to_vec()
        })
    );
    let _ = cmd::APP_FIRST;
}

#[test]
fn shutdown_sends_kick_4_to_every_node() {
    let server = start(config());
    let mut g = server.game(1, "p");
    let (mut x, members) = server.cross(2, "p", 2, 1);
    assert_eq!(members, [(1, String::new(), 1)]);
    assert_eq!(expect_assign(&mut g), (2, 1));
    let mut unauthenticated = server.connect();
    server.stop().expect("run returned Ok");
    expect_kick(&mut g, 4);
    expect_kick(&mut x, 4);
    assert!(unauthenticated.closed_within(REPLY));
}

#[test]
fn a_node_that_never_reads_is_dropped_at_the_write_cap() {
    let server = start(common::Config {
        max_write_buffer: 65_536,
        ..config()
    });
    let mut hog = server.game(1, "p");
    let mut honest = server.game(2, "p");
    // Heartbeats without ever reading the ACKs: once the kernel buffers are full, the server's
    // queue for this node grows past the cap and the node is dropped.
    let mut burst = Vec::new();
    for ts in 0..10_000u64 {
        Heartbeat { ts }.encode(&mut burst);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut dropped = false;
    let mut sent = 0usize;
    hog.stream()
        .set_write_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    while Instant::now() < deadline && sent < 400 {
        match hog.stream().write_all(&burst) {
            Ok(()) => sent += 1,
            Err(_) => {
                dropped = true;
                break;
            }
        }
    }
    if !dropped {
        // Writes may still fit the kernel's buffers; the server must have closed it by now.
        let mut buf = [0u8; 65536];
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            match hog.stream().read(&mut buf) {
                Ok(0) | Err(_) => {
                    dropped = true;
                    break;
                }
                Ok(_) => {}
            }
        }
    }
    assert!(
        dropped,
        "node that never reads was not dropped after {sent} bursts"
    );
    honest.send_heartbeat(5).expect("hb");
    assert_eq!(
        honest.recv(REPLY).expect("ack"),
        Some(ServerMessage::HeartbeatAck(5)),
        "others unaffected"
    );
}
