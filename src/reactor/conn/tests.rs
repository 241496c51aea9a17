//! The read path over a real loopback socket pair: frames reassembled from partial reads,
//! and the per-turn read cap. The node is driven by hand (no `run`), one call per turn step.

use super::super::{LoginNode, READS_PER_TURN};
use crate::cluster::{ConnId, NoHandler};
use crate::config::Config;
use crate::proto::{self, Auth, Heartbeat};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const TOKEN: &str = "read-path-test-token";
const WAIT: Duration = Duration::from_secs(5);

/// A node on a loopback port and one accepted connection to it.
fn node_and_client() -> (LoginNode<NoHandler>, ConnId, TcpStream) {
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        token: TOKEN.into(),
        state_dir: None,
        admin_listen: None,
        ..Config::default()
    };
    let mut node = LoginNode::bind(config).expect("bind");
    let client = TcpStream::connect(node.local_addr()).expect("connect");
    client.set_read_timeout(Some(WAIT)).expect("timeout");
    let deadline = Instant::now() + WAIT;
    while node.conns.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the connection was never accepted"
        );
        node.accept_ready(node.now());
    }
    let conn = node.conns.iter().next().map(|(k, _)| k).expect("accepted");
    (node, conn, client)
}

fn auth_frame(id: u32) -> Vec<u8> {
    let time = u32::try_from(super::super::unix_now()).expect("time fits");
    let mut frame = Vec::new();
    Auth {
        node_type: 1,
        node_id: id,
        plat: "p",
        time,
        sign: proto::auth::sign(id, time, TOKEN.as_bytes()),
    }
    .encode(&mut frame)
    .expect("fits");
    frame
}

fn heartbeat_frame(ts: u64) -> Vec<u8> {
    let mut frame = Vec::new();
    Heartbeat { ts }.encode(&mut frame);
    frame
}

/// Reads one frame from the client side; returns its command.
fn recv_cmd(client: &mut TcpStream) -> u16 {
    let mut header = [0u8; 2];
    client.read_exact(&mut header).expect("a frame header");
    let mut payload = vec![0u8; u16::from_be_bytes(header) as usize];
    client.read_exact(&mut payload).expect("a frame body");
    proto::split_payload(&payload).0
}

/// Turns of reads (the connection's readiness, as an event would report it) until `done`.
fn read_until(node: &mut LoginNode<NoHandler>, conn: ConnId, done: impl Fn(&LoginNode) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done(node) {
        assert!(Instant::now() < deadline, "the bytes never arrived");
        node.read_ready(conn, node.now());
    }
}

/// Waits until the server side of `conn` has `len` bytes waiting (peeked, not read).
fn wait_readable(node: &LoginNode<NoHandler>, conn: ConnId, len: usize) {
    let mut buf = vec![0u8; len + 1];
    let deadline = Instant::now() + WAIT;
    while node.conns[conn].stream.peek(&mut buf).unwrap_or(0) < len {
        assert!(Instant::now() < deadline, "the bytes never arrived");
    }
}

#[test]
fn a_frame_sent_a_byte_at_a_time_is_kept_partial_and_handled_once_whole() {
    let (mut node, conn, mut client) = node_and_client();
    let frame = auth_frame(7);
    let (last, head) = frame.split_last().expect("a frame");
    for (i, byte) in head.iter().enumerate() {
        client.write_all(&[*byte]).expect("write");
        read_until(&mut node, conn, |n| n.conns[conn].partial.len() == i + 1);
        assert_eq!(
            node.io_stats.frames_in,
            0,
            "incomplete after {} bytes",
            i + 1
        );
    }
    assert_eq!(
        &node.conns[conn].partial[..],
        head,
        "only the bytes received"
    );
    client.write_all(&[*last]).expect("write");
    read_until(&mut node, conn, |n| n.io_stats.frames_in == 1);
    assert!(node.conns[conn].partial.is_empty(), "handed over whole");
    assert_eq!(node.io_stats.bytes_in, frame.len() as u64);
    assert_eq!(recv_cmd(&mut client), proto::cmd::AUTH_RESULT);
}

#[test]
fn frames_split_across_reads_are_handled_in_order_and_the_tail_is_kept() {
    let (mut node, conn, mut client) = node_and_client();
    // AUTH whole, then a heartbeat cut inside its header, then one cut inside its body.
    let mut bytes = auth_frame(8);
    let first = bytes.len() + 1;
    bytes.extend_from_slice(&heartbeat_frame(1));
    let second = bytes.len() + 5;
    bytes.extend_from_slice(&heartbeat_frame(2));
    for (from, to) in [(0, first), (first, second), (second, bytes.len())] {
        client.write_all(&bytes[from..to]).expect("write");
        read_until(&mut node, conn, |n| n.io_stats.bytes_in == to as u64);
    }
    assert_eq!(node.io_stats.frames_in, 3);
    assert!(node.conns[conn].partial.is_empty());
    let cmds: Vec<u16> = (0..3).map(|_| recv_cmd(&mut client)).collect();
    assert_eq!(
        cmds,
        [
            proto::cmd::AUTH_RESULT,
            proto::cmd::HEARTBEAT_ACK,
            proto::cmd::HEARTBEAT_ACK
        ]
    );
}

#[test]
fn a_connection_reads_at_most_reads_per_turn_times_and_goes_on_next_turn() {
    let (mut node, conn, mut client) = node_and_client();
    let auth = auth_frame(9);
    client.write_all(&auth).expect("write");
    read_until(&mut node, conn, |n| n.io_stats.frames_in == 1);
    assert_eq!(recv_cmd(&mut client), proto::cmd::AUTH_RESULT);
    // A read buffer of five heartbeats: every read takes exactly five frames.
    let hb = heartbeat_frame(3);
    node.read_buf = vec![0u8; 5 * hb.len()].into_boxed_slice();
    let sent = 40;
    client.write_all(&hb.repeat(sent)).expect("write");
    wait_readable(&node, conn, sent * hb.len());

    let now = node.now();
    node.read_ready(conn, now);
    let per_turn = (READS_PER_TURN * 5) as u64;
    assert_eq!(
        node.io_stats.frames_in,
        1 + per_turn,
        "capped at the read count"
    );
    assert_eq!(node.pending_reads, [conn], "revisited next turn");
    node.read_ready(conn, now);
    assert_eq!(
        node.io_stats.frames_in,
        1 + per_turn,
        "not twice in one turn"
    );

    let deadline = Instant::now() + WAIT;
    while !node.pending_reads.is_empty() {
        assert!(Instant::now() < deadline, "the reads never drained");
        let carried = std::mem::take(&mut node.pending_reads);
        node.read_carried(carried, node.now());
    }
    assert_eq!(node.io_stats.frames_in, 1 + sent as u64);
    assert!(!node.conns[conn].read_pending && !node.conns[conn].closing);
}
