//! The cluster on a virtual clock: no sockets, no sleeping.

use super::*;
use crate::proto::{Auth, Message};

const TOKEN: &str = "secret";
const T0: u64 = 1_700_000_000;

#[derive(Default)]
struct Recorder {
    frames: Vec<(ConnId, Vec<u8>)>,
    closed: Vec<ConnId>,
}

impl Outbox for Recorder {
    fn send(&mut self, conn: ConnId, frame: &[u8]) {
        self.frames.push((conn, frame.to_vec()));
    }
    fn close(&mut self, conn: ConnId) {
        self.closed.push(conn);
    }
}

#[derive(Default)]
struct AppLog {
    events: Vec<String>,
}

impl Handler for AppLog {
    fn node_online(&mut self, _ctx: &mut Context<'_>, node: NodeKey, _info: &OnlineInfo<'_>) {
        self.events.push(format!("online {node}"));
    }
    fn node_offline(&mut self, _ctx: &mut Context<'_>, node: NodeKey) {
        self.events.push(format!("offline {node}"));
    }
    fn app_command(&mut self, ctx: &mut Context<'_>, from: NodeKey, cmd: u16, body: &[u8]) {
        self.events.push(format!("app {from} {cmd:#06x} {body:?}"));
        // Echo back to the sender, to prove the context can send.
        let _ = ctx.send(from, cmd, body);
    }
}

struct H {
    c: Cluster,
    out: Recorder,
    app: AppLog,
    now: Now,
    /// Every record made durable by `sync`, in order (what a database would hold).
    synced: Vec<u8>,
}

fn config() -> Config {
    Config {
        token: TOKEN.into(),
        heartbeat_interval: 1,
        heartbeat_timeout: 3,
        auth_timeout_ms: 2_000,
        max_connections: 100,
        default_capacity: 2,
        ..Config::default()
    }
}

fn auth(node_type: u8, id: u32, time: u32, token: &str) -> Vec<u8> {
    let mut v = Vec::new();
    let sign = crate::proto::auth::sign(id, time, token.as_bytes());
    Auth {
        node_type,
        node_id: id,
        plat: "dev",
        time,
        sign,
    }
    .encode(&mut v)
    .expect("fits");
    v
}

fn game_info(id: u32, name: &str, plat: &str, cross: u32, pos: u16) -> Vec<u8> {
    let mut v = Vec::new();
    GameInfo {
        serv_id: id,
        serv_name: name,
        open_time: 1,
        cross_plat: plat,
        cross_server_id: cross,
        cross_pos: pos,
        addr: "a:1",
    }
    .encode(&mut v)
    .expect("fits");
    v
}

fn cross_info(id: u32, plat: &str, cross_id: u32, cap: u16, list: &[u32]) -> Vec<u8> {
    let mut v = Vec::new();
    let name = format!("cross{cross_id}@host");
    let info = CrossInfo {
        id,
        cross_plat: plat,
        cross_server_id: cross_id,
        cross_node_name: &name,
        capacity: cap,
        game_server_list: proto::U32List::EMPTY,
    };
    info.encode_with(list, &mut v).expect("fits");
    v
}

fn hb(ts: u64) -> Vec<u8> {
    let mut v = Vec::new();
    Heartbeat { ts }.encode(&mut v);
    v
}

/// An owned, comparable summary of a frame the cluster sent.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    AuthResult(u8),
    Ack(u64),
    Assign(u32, String, String, u16),
    Members(Vec<(u32, String, u16)>),
    StatusPush(u8),
    Snapshot(u32, u8, usize),
    Kick(u8),
    App(u16, Vec<u8>),
}

fn summarize(frame: &[u8]) -> Got {
    let (payload, used) = proto::parse_frame(frame, 65535)
        .expect("valid")
        .expect("whole");
    assert_eq!(used, frame.len(), "one frame per send");
    match Message::decode(payload).expect("decodes") {
        Message::AuthResult(r) => Got::AuthResult(r.code),
        Message::HeartbeatAck(h) => Got::Ack(h.ts),
        Message::CrossAssign(a) => Got::Assign(
            a.cross_server_id,
            a.cross_node_name.into(),
            a.cross_plat.into(),
            a.cross_pos,
        ),
        Message::CrossMembers(m) => Got::Members(
            m.iter()
                .map(|m| (m.serv_id, m.serv_name.to_string(), m.cross_pos))
                .collect(),
        ),
        Message::StatusPush(s) => Got::StatusPush(s.maintenance),
        Message::WhitelistSnapshot(s) => Got::Snapshot(s.version, s.last, s.entries.len()),
        Message::Kick(k) => Got::Kick(k.reason),
        Message::App { cmd, body } => Got::App(cmd, body.to_vec()),
        other => panic!("unexpected frame from the server: {other:?}"),
    }
}

impl H {
    fn new() -> H {
        H::with(config())
    }

    fn with(cfg: Config) -> H {
        let now = Now {
            mono_ms: 1_000,
            unix_secs: T0,
        };
        H {
            c: Cluster::new(&cfg, now),
            out: Recorder::default(),
            app: AppLog::default(),
            now,
            synced: Vec::new(),
        }
    }

    fn open(&mut self, conn: ConnId) {
        self.c.open(
            conn,
            SocketAddr::from(([127, 0, 0, 1], 5000 + conn as u16)),
            self.now,
        );
    }

    fn feed(&mut self, conn: ConnId, frame: &[u8]) {
        let (payload, _) = proto::parse_frame(frame, 65535)
            .expect("valid")
            .expect("whole");
        self.c
            .handle_frame(conn, payload, self.now, &mut self.out, &mut self.app);
        self.sync();
    }

    /// The end of a reactor turn: the journal's records are durable.
    fn sync(&mut self) {
        if !self.c.pending_journal().is_empty() {
            self.synced.extend_from_slice(self.c.pending_journal());
            self.c.journal_synced(&mut self.out);
        }
    }

    /// A frame in a turn whose journal is not synced yet.
    fn feed_unsynced(&mut self, conn: ConnId, frame: &[u8]) {
        let (payload, _) = proto::parse_frame(frame, 65535)
            .expect("valid")
            .expect("whole");
        self.c
            .handle_frame(conn, payload, self.now, &mut self.out, &mut self.app);
    }

    /// Lets CROSS_MEMBERS fold windows end (the folded lists go out).
    fn settle(&mut self) {
        self.advance(super::fold::FOLD_MS);
    }

    fn advance(&mut self, ms: u64) {
        self.now.mono_ms += ms;
        self.now.unix_secs = T0 + (self.now.mono_ms - 1_000) / 1000;
        self.c
            .handle_timeout(self.now, &mut self.out, &mut self.app);
        self.sync();
    }

    /// Everything sent to `conn` since the last call, decoded.
    fn got(&mut self, conn: ConnId) -> Vec<Got> {
        let mut mine = Vec::new();
        self.out.frames.retain(|(c, f)| {
            if *c == conn {
                // A send may hold several frames (STATUS_PUSH + snapshot): split them.
                let mut at = 0;
                while at < f.len() {
                    let (_, used) = proto::parse_frame(&f[at..], 65535)
                        .expect("valid")
                        .expect("whole");
                    mine.push(summarize(&f[at..at + used]));
                    at += used;
                }
                false
            } else {
                true
            }
        });
        mine
    }

    fn is_closed(&self, conn: ConnId) -> bool {
        self.out.closed.contains(&conn)
    }

    /// Opens `conn`, authenticates it as (type, id), and drops the AUTH_RESULT.
    fn login(&mut self, conn: ConnId, node_type: u8, id: u32) {
        self.open(conn);
        self.feed(conn, &auth(node_type, id, T0 as u32, TOKEN));
        assert_eq!(self.got(conn), [Got::AuthResult(0)], "login of conn {conn}");
    }

    fn game(&mut self, conn: ConnId, id: u32, plat: &str) -> Vec<Got> {
        self.login(conn, 1, id);
        self.feed(conn, &game_info(id, &format!("S{id}"), plat, 0, 0));
        self.got(conn)
    }

    fn cross(&mut self, conn: ConnId, id: u32, plat: &str, cross_id: u32, cap: u16) -> Vec<Got> {
        self.login(conn, 2, id);
        self.feed(conn, &cross_info(id, plat, cross_id, cap, &[]));
        self.got(conn)
    }

    fn release(&mut self, conn: ConnId) {
        self.c.closed(conn, self.now, &mut self.out, &mut self.app);
    }
}

fn assign(cross: u32, plat: &str, pos: u16) -> Got {
    Got::Assign(cross, format!("cross{cross}@host"), plat.into(), pos)
}

fn members(list: &[(u32, &str, u16)]) -> Got {
    Got::Members(
        list.iter()
            .map(|(s, n, p)| (*s, n.to_string(), *p))
            .collect(),
    )
}

#[test]
fn auth_ok_carries_server_time_and_heartbeat_settings() {
    let mut h = H::new();
    h.open(1);
    h.feed(1, &auth(1, 1001, T0 as u32, TOKEN));
    let frame = h.out.frames.pop().expect("a reply").1;
    let r = AuthResult::decode(&frame[4..]).expect("decodes");
    assert_eq!(
        r,
        AuthResult {
            code: 0,
            server_time: T0 as u32,
            heartbeat_interval: 1,
            heartbeat_timeout: 3
        }
    );
    assert!(!h.is_closed(1));
    assert_eq!(h.c.registered(), 1);
}

#[test]
fn auth_failures_get_their_code_and_close() {
    let mut h = H::with(Config {
        duplicate_policy: DuplicatePolicy::Reject,
        ..config()
    });
    h.login(1, 1, 7);
    let t = T0 as u32;
    let mut truncated = auth(1, 8, t, TOKEN);
    truncated.truncate(truncated.len() - 1);
    truncated[1] -= 1;
    let cases: Vec<(Vec<u8>, u8)> = vec![
        (truncated, 6),
        (auth(3, 8, t, TOKEN), 6),
        (auth(1, 8, t, "wrong"), 1),
        // Signature is checked before time: a bad signature with a bad time is code 1.
        (auth(1, 8, t - 10_000, "wrong"), 1),
        (auth(1, 8, t - 301, TOKEN), 2),
        (auth(1, 8, t + 301, TOKEN), 2),
        (auth(1, 7, t, TOKEN), 3),
    ];
    for (i, (frame, code)) in cases.into_iter().enumerate() {
        let conn = 10 + i;
        h.open(conn);
        h.feed(conn, &frame);
        assert_eq!(h.got(conn), [Got::AuthResult(code)], "case {i}");
        assert!(h.is_closed(conn), "case {i} closed");
    }
    // The edge of the window is inside it.
    h.open(30);
    h.feed(30, &auth(1, 9, t - 300, TOKEN));
    assert_eq!(h.got(30), [Got::AuthResult(0)]);
    // Invalid UTF-8 in plat is malformed: code 6.
    let mut bad = auth(1, 9, t, TOKEN);
    bad[9] = 0xff;
    h.open(31);
    h.feed(31, &bad);
    assert_eq!(h.got(31), [Got::AuthResult(6)]);
}

#[test]
fn previous_token_is_accepted_during_rotation() {
    let mut h = H::with(Config {
        previous_token: Some("old".into()),
        ..config()
    });
    h.open(1);
    h.feed(1, &auth(1, 1, T0 as u32, "old"));
    assert_eq!(h.got(1), [Got::AuthResult(0)]);
}

#[test]
fn capacity_counts_open_connections_but_never_refuses_a_replacement() {
    let mut h = H::with(Config {
        max_connections: 2,
        ..config()
    });
    h.login(1, 1, 1);
    h.open(2);
    h.open(3); // 3 open > 2
    h.feed(2, &auth(1, 2, T0 as u32, TOKEN));
    assert_eq!(h.got(2), [Got::AuthResult(5)]);
    h.release(2);
    // Still 2 open after 2 left: conn 3 fits now.
    h.feed(3, &auth(1, 3, T0 as u32, TOKEN));
    assert_eq!(h.got(3), [Got::AuthResult(0)]);
    // Over the limit again, but replacing node 1 is allowed.
    h.open(4);
    h.feed(4, &auth(1, 1, T0 as u32, TOKEN));
    assert_eq!(h.got(4), [Got::AuthResult(0)]);
    assert_eq!(h.got(1), [Got::Kick(1)]);
}

#[test]
fn duplicate_replace_kicks_the_old_connection_and_keeps_the_new_registered() {
    let mut h = H::new();
    h.cross(1, 50, "p", 50, 4);
    assert_eq!(
        h.game(2, 7, "p"),
        [
            Got::StatusPush(0),
            Got::Snapshot(0, 1, 0),
            assign(50, "p", 1)
        ]
    );
    h.got(1);
    h.login(3, 1, 7);
    assert_eq!(h.got(2), [Got::Kick(1)]);
    assert!(h.is_closed(2));
    assert_eq!(
        h.app.events.last().map(String::as_str),
        Some("offline game 7")
    );
    // The reactor releases the old socket later; the new login must stay registered.
    h.release(2);
    assert_eq!(h.c.registered(), 2);
    h.feed(3, &game_info(7, "S7", "p", 0, 0));
    assert_eq!(
        h.got(3),
        [
            Got::StatusPush(0),
            Got::Snapshot(0, 1, 0),
            assign(50, "p", 1)
        ],
        "same slot again"
    );
}

#[test]
fn protocol_errors_get_kick_5_and_close() {
    let mut status = Vec::new();
    StatusReport { online: 1 }.encode(&mut status);
    let app = [0, 2, 0x10, 0x00];
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("heartbeat before auth", vec![hb(1)]),
        ("app before auth", vec![app.to_vec()]),
        (
            "app before info",
            vec![auth(1, 1, T0 as u32, TOKEN), app.to_vec()],
        ),
        (
            "status before info",
            vec![auth(1, 1, T0 as u32, TOKEN), status.clone()],
        ),
        (
            "second auth",
            vec![auth(1, 1, T0 as u32, TOKEN), auth(1, 1, T0 as u32, TOKEN)],
        ),
        (
            "cross info from game",
            vec![auth(1, 1, T0 as u32, TOKEN), cross_info(1, "p", 1, 1, &[])],
        ),
        (
            "game info from cross",
            vec![auth(2, 1, T0 as u32, TOKEN), game_info(1, "x", "p", 0, 0)],
        ),
        (
            "serv_id mismatch",
            vec![auth(1, 1, T0 as u32, TOKEN), game_info(2, "x", "p", 0, 0)],
        ),
        (
            "id mismatch",
            vec![auth(2, 1, T0 as u32, TOKEN), cross_info(2, "p", 1, 1, &[])],
        ),
        (
            "second info",
            vec![
                auth(1, 1, T0 as u32, TOKEN),
                game_info(1, "x", "p", 0, 0),
                game_info(1, "x", "p", 0, 0),
            ],
        ),
        (
            "status from cross",
            vec![
                auth(2, 1, T0 as u32, TOKEN),
                cross_info(1, "p", 1, 1, &[]),
                status.clone(),
            ],
        ),
        (
            "server command",
            vec![
                auth(1, 1, T0 as u32, TOKEN),
                game_info(1, "x", "p", 0, 0),
                vec![0, 3, 0x80, 0x05, 0],
            ],
        ),
        (
            "unknown command",
            vec![
                auth(1, 1, T0 as u32, TOKEN),
                game_info(1, "x", "p", 0, 0),
                vec![0, 2, 0x01, 0x00],
            ],
        ),
        (
            "command zero",
            vec![
                auth(1, 1, T0 as u32, TOKEN),
                game_info(1, "x", "p", 0, 0),
                vec![0, 2, 0, 0],
            ],
        ),
        (
            "truncated heartbeat",
            vec![auth(1, 1, T0 as u32, TOKEN), vec![0, 5, 0, 4, 1, 2, 3]],
        ),
        (
            "truncated game info",
            vec![auth(1, 1, T0 as u32, TOKEN), vec![0, 5, 0, 2, 0, 0, 1]],
        ),
    ];
    for (name, frames) in cases {
        let mut h = H::new();
        h.open(1);
        for f in &frames {
            h.feed(1, f);
        }
        let got = h.got(1);
        assert_eq!(got.last(), Some(&Got::Kick(5)), "{name}: {got:?}");
        assert!(h.is_closed(1), "{name}");
        assert_eq!(h.c.registered(), 0, "{name}: left the registry");
    }
}

#[test]
fn heartbeat_is_echoed_in_every_phase_after_auth() {
    let mut h = H::new();
    h.login(1, 1, 1);
    h.feed(1, &hb(42));
    assert_eq!(h.got(1), [Got::Ack(42)]);
    h.feed(1, &game_info(1, "S1", "p", 0, 0));
    h.got(1);
    h.feed(1, &hb(u64::MAX));
    assert_eq!(h.got(1), [Got::Ack(u64::MAX)]);
}

#[test]
fn silent_node_is_kicked_within_the_contract_window() {
    let mut h = H::new(); // heartbeat_timeout 3 s
    h.game(1, 1, "p");
    h.advance(2_999);
    assert!(h.got(1).is_empty(), "not before the timeout");
    h.advance(1_000);
    assert_eq!(h.got(1), [Got::Kick(2)], "within 1 s after it");
    assert!(h.is_closed(1));
    assert_eq!(h.c.registered(), 0);
    assert_eq!(
        h.app.events.last().map(String::as_str),
        Some("offline game 1")
    );
}

#[test]
fn any_frame_refreshes_liveness() {
    let mut h = H::new();
    h.game(1, 1, "p");
    let mut status = Vec::new();
    StatusReport { online: 5 }.encode(&mut status);
    for _ in 0..10 {
        h.advance(2_000);
        h.feed(1, &status);
    }
    assert!(h.got(1).is_empty(), "kept alive by STATUS_REPORT alone");
    assert!(matches!(
        h.c.node(NodeKey {
            node_type: NodeType::Game,
            node_id: 1
        })
        .map(|n| n.info.clone()),
        Some(NodeInfo::Game {
            players_online: 5,
            ..
        })
    ));
    h.advance(2_999);
    assert!(h.got(1).is_empty());
    h.advance(1_000);
    assert_eq!(h.got(1), [Got::Kick(2)]);
}

#[test]
fn a_connection_that_never_authenticates_is_closed_at_auth_timeout() {
    let mut h = H::new(); // auth_timeout 2 s
    h.open(1);
    h.advance(1_999);
    assert!(!h.is_closed(1));
    h.advance(11);
    assert!(h.is_closed(1));
    assert!(h.got(1).is_empty(), "no frame: it never authenticated");
    h.release(1);
    assert_eq!(h.c.open_connections(), 0);
}

#[test]
fn allocation_across_two_cross_nodes_and_the_waiting_queue() {
    let mut h = H::new(); // default capacity 2
                          // Nobody serves platform p yet: the first game node waits.
    assert_eq!(
        h.game(1, 101, "p"),
        [Got::StatusPush(0), Got::Snapshot(0, 1, 0)]
    );
    assert_eq!(h.c.waiting("p"), [101]);
    // A cross node of p with 2 slots arrives: 101 is assigned.
    assert_eq!(h.cross(2, 9, "p", 90, 0), [members(&[(101, "S101", 1)])]);
    assert_eq!(h.got(1), [assign(90, "p", 1)]);
    // A second cross node with 3 slots: it has the most free slots now.
    assert_eq!(h.cross(3, 8, "p", 80, 3), [members(&[])]);
    h.game(4, 102, "p");
    // 80's first list just went out: this change folds into the list at the window's end.
    h.settle();
    assert_eq!(h.got(3), [members(&[(102, "S102", 1)])]);
    h.game(5, 103, "p"); // tie 2 free / 1 free -> 80 has 2 free
    h.game(6, 104, "p"); // 90: 1 free, 80: 1 free -> tie -> lowest id 80
    h.game(7, 105, "p"); // 90: 1 free
    h.settle();
    // Two changes inside one window: one complete, current list.
    assert_eq!(
        h.got(3),
        [members(&[
            (102, "S102", 1),
            (103, "S103", 2),
            (104, "S104", 3)
        ])]
    );
    assert_eq!(h.got(2), [members(&[(101, "S101", 1), (105, "S105", 2)])]);
    // Full: two more wait, in order.
    h.game(8, 106, "p");
    h.game(9, 107, "p");
    assert_eq!(h.c.waiting("p"), [106, 107]);
    // 106 leaves and returns: it queues again at the end.
    h.release(8);
    h.game(10, 106, "p");
    assert_eq!(h.c.waiting("p"), [107, 106]);
    // Capacity appears in p: the head of the queue gets it.
    assert_eq!(h.cross(11, 7, "p", 70, 1), [members(&[(107, "S107", 1)])]);
    assert_eq!(h.got(9), [assign(70, "p", 1)]);
    assert_eq!(h.c.waiting("p"), [106]);
}

#[test]
fn offline_members_keep_slots_and_a_cross_restart_changes_nothing() {
    let mut h = H::new();
    h.cross(1, 9, "p", 90, 2);
    h.game(2, 101, "p");
    h.release(2); // game offline: keeps slot 1
    h.release(1); // cross offline
    assert_eq!(h.cross(3, 9, "p", 90, 2), [members(&[(101, "S101", 1)])]);
    h.game(4, 102, "p");
    assert_eq!(h.got(4), [], "already drained by game()");
    h.settle();
    assert_eq!(h.got(3), [members(&[(101, "S101", 1), (102, "S102", 2)])]);
}

#[test]
fn adoption_from_reports_and_lists() {
    let mut h = H::new();
    // A game node reports an assignment to a cross node never heard from: it waits for the name.
    h.login(1, 1, 101);
    h.feed(1, &game_info(101, "S101", "p", 90, 5));
    assert_eq!(h.got(1), [Got::StatusPush(0), Got::Snapshot(0, 1, 0)]);
    // The cross node connects listing 101 and an unknown 102 (never connected: empty name).
    h.login(2, 2, 9);
    h.feed(2, &cross_info(9, "p", 90, 8, &[102, 101]));
    assert_eq!(h.got(2), [members(&[(102, "", 1), (101, "S101", 5)])]);
    assert_eq!(h.got(1), [assign(90, "p", 5)]);
    // 102 connects reporting nothing: the record wins, and its name reaches the cross node.
    h.login(3, 1, 102);
    h.feed(3, &game_info(102, "S102", "p", 0, 0));
    assert_eq!(
        h.got(3),
        [
            Got::StatusPush(0),
            Got::Snapshot(0, 1, 0),
            assign(90, "p", 1)
        ]
    );
    h.settle();
    assert_eq!(h.got(2), [members(&[(102, "S102", 1), (101, "S101", 5)])]);
}

#[test]
fn record_wins_over_a_different_report_and_is_sent_again() {
    let mut h = H::new();
    h.cross(1, 9, "p", 90, 4);
    h.cross(2, 8, "p", 80, 4);
    h.game(3, 101, "p"); // -> 80 (tie -> lowest id)
    h.release(3);
    h.login(4, 1, 101);
    h.feed(4, &game_info(101, "S101", "p", 90, 3));
    assert_eq!(
        h.got(4),
        [
            Got::StatusPush(0),
            Got::Snapshot(0, 1, 0),
            assign(80, "p", 1)
        ]
    );
}

#[test]
fn a_rename_sends_new_members() {
    let mut h = H::new();
    h.cross(1, 9, "p", 90, 4);
    h.game(2, 101, "p");
    h.got(1);
    h.release(2);
    h.login(3, 1, 101);
    h.feed(3, &game_info(101, "Renamed", "p", 90, 1));
    h.settle();
    assert_eq!(h.got(1), [members(&[(101, "Renamed", 1)])]);
}

#[test]
fn a_second_process_claiming_a_cross_server_id_replaces_the_first() {
    let mut h = H::new();
    h.cross(1, 9, "p", 90, 4);
    h.login(2, 2, 10);
    h.feed(2, &cross_info(10, "p", 90, 4, &[]));
    assert_eq!(h.got(1), [Got::Kick(1)]);
    assert_eq!(h.got(2), [members(&[])]);
}

#[test]
fn application_commands_reach_the_handler_and_never_disconnect() {
    let mut h = H::new();
    h.game(1, 1, "p");
    h.feed(1, &[0, 5, 0x12, 0x34, 1, 2, 3]);
    assert_eq!(
        h.app.events.last().map(String::as_str),
        Some("app game 1 0x1234 [1, 2, 3]")
    );
    assert_eq!(
        h.got(1),
        [Got::App(0x1234, vec![1, 2, 3])],
        "handler context echoed it"
    );
    // Without a handler: ignored, still connected.
    let mut out = Recorder::default();
    let payload = [0x7f, 0xff, 9];
    h.c.handle_frame(1, &payload, h.now, &mut out, &mut NoHandler);
    assert!(out.frames.is_empty() && out.closed.is_empty());
}

#[test]
fn handler_context_sends_app_commands_to_online_nodes_only() {
    let mut out = Recorder::default();
    let mut h = H::new();
    let mut ctx = h.c.context(&mut out, 0);
    let node = NodeKey {
        node_type: NodeType::Game,
        node_id: 1,
    };
    assert_eq!(ctx.send(node, 0x1000, b""), Err(SendError::NotOnline));
    assert_eq!(ctx.send(node, 0x8004, b""), Err(SendError::NotAppCommand));
}

#[test]
fn shutdown_kicks_every_registered_node_with_reason_4() {
    let mut h = H::new();
    h.game(1, 1, "p");
    h.login(2, 2, 2);
    h.open(3);
    h.c.shutdown(h.now, &mut h.out, &mut h.app);
    assert_eq!(h.got(1), [Got::Kick(4)]);
    assert_eq!(h.got(2), [Got::Kick(4)]);
    assert!(h.got(3).is_empty());
    assert!([1, 2, 3].iter().all(|c| h.is_closed(*c)));
    assert_eq!(h.c.registered(), 0);
}

#[test]
fn frames_after_close_are_ignored() {
    let mut h = H::new();
    h.open(1);
    h.feed(1, &hb(1)); // protocol error -> closed
    h.got(1);
    h.feed(1, &auth(1, 1, T0 as u32, TOKEN));
    assert!(h.got(1).is_empty());
    h.c.frame_error(
        1,
        FrameError::TooShort { len: 0 },
        h.now,
        &mut h.out,
        &mut h.app,
    );
    assert!(h.got(1).is_empty());
}

// ---- durability and operator changes ----

fn whitelist_delta(frame_bytes: &[u8]) -> Vec<(u32, u8, String)> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < frame_bytes.len() {
        let (payload, used) = proto::parse_frame(&frame_bytes[at..], 65535)
            .expect("valid")
            .expect("whole");
        if let Message::WhitelistDelta(d) = Message::decode(payload).expect("decodes") {
            out.push((d.version, d.op, d.entry.to_string()));
        }
        at += used;
    }
    out
}

impl H {
    /// Whitelist deltas sent to `conn` since the last call (other frames dropped).
    fn deltas(&mut self, conn: ConnId) -> Vec<(u32, u8, String)> {
        let mut mine = Vec::new();
        self.out.frames.retain(|(c, f)| {
            if *c == conn {
                mine.extend(whitelist_delta(f));
                false
            } else {
                true
            }
        });
        mine
    }
}

fn journal_records(bytes: &[u8]) -> Vec<crate::state::Record> {
    let mut file = crate::state::record::JOURNAL_MAGIC.to_vec();
    file.extend_from_slice(bytes);
    crate::state::record::scan(&file, crate::state::record::JOURNAL_MAGIC)
        .expect("scan")
        .records
}

#[test]
fn a_new_assignment_is_journaled_and_announced_only_after_the_sync() {
    let mut h = H::new();
    h.cross(2, 9, "p", 90, 0);
    h.login(1, 1, 101);
    h.feed_unsynced(1, &game_info(101, "S101", "p", 0, 0));
    // Welcome at once (nothing pending then); the assignment waits for the journal.
    assert_eq!(h.got(1), [Got::StatusPush(0), Got::Snapshot(0, 1, 0)]);
    assert!(h.got(2).is_empty(), "no CROSS_MEMBERS before the sync");
    let records = journal_records(h.c.pending_journal());
    assert_eq!(
        records,
        [
            crate::state::Record::Name {
                serv: 101,
                name: "S101".into()
            },
            crate::state::Record::Game {
                serv: 101,
                plat: "p".into(),
                open_time: 1,
                addr: "a:1".into()
            },
            crate::state::Record::Assign {
                serv: 101,
                cross: 90,
                pos: 1
            },
        ]
    );
    h.sync();
    assert_eq!(h.got(1), [assign(90, "p", 1)]);
    h.settle();
    assert_eq!(h.got(2), [members(&[(101, "S101", 1)])]);
    assert!(h.c.pending_journal().is_empty());
    // A known node coming back writes nothing and is answered at once.
    h.release(1);
    h.login(3, 1, 101);
    h.feed_unsynced(3, &game_info(101, "S101", "p", 0, 0));
    assert!(h.c.pending_journal().is_empty());
    assert_eq!(
        h.got(3),
        [
            Got::StatusPush(0),
            Got::Snapshot(0, 1, 0),
            assign(90, "p", 1)
        ]
    );
}

#[test]
fn a_failed_journal_write_holds_announcements_makes_no_new_assignments_and_recovers() {
    let mut h = H::new();
    h.cross(2, 9, "p", 90, 0);
    h.login(1, 1, 101);
    h.feed_unsynced(1, &game_info(101, "S101", "p", 0, 0));
    h.got(1);
    h.c.journal_failed();
    assert!(!h.c.is_writable());
    // Heartbeats are still answered.
    h.feed_unsynced(1, &hb(7));
    assert_eq!(h.got(1), [Got::Ack(7)]);
    // A new game node waits instead of taking a slot; operator changes are refused.
    h.open(3);
    h.feed_unsynced(3, &auth(1, 102, T0 as u32, TOKEN));
    assert_eq!(h.got(3), [Got::AuthResult(0)]);
    h.feed_unsynced(3, &game_info(102, "S102", "p", 0, 0));
    assert_eq!(h.c.waiting("p"), [102]);
    assert_eq!(
        h.c.whitelist_change(&["x"], true),
        Err(OperatorError::Unavailable)
    );
    assert_eq!(
        h.c.set_maintenance(101, true),
        Err(OperatorError::Unavailable)
    );
    // Its welcome shows only durable state (no operator change is pending): sent at once.
    assert_eq!(h.got(3), [Got::StatusPush(0), Got::Snapshot(0, 1, 0)]);
    // The retry succeeds: 101's assignment goes out, and 102 is assigned (journaled anew).
    h.c.journal_synced(&mut h.out);
    assert!(h.c.is_writable());
    assert_eq!(h.got(1), [assign(90, "p", 1)]);
    assert!(h.got(3).is_empty());
    assert!(h.c.waiting("p").is_empty());
    assert!(!h.c.pending_journal().is_empty(), "102's record is pending");
    h.sync();
    assert_eq!(h.got(3), [assign(90, "p", 2)]);
}

#[test]
fn whitelist_changes_bump_the_version_and_reach_every_welcomed_game_node() {
    let mut h = H::new();
    h.game(1, 101, "p");
    h.game(2, 102, "p");
    h.cross(3, 9, "p", 90, 0);
    h.got(1);
    h.got(2);
    assert_eq!(h.c.whitelist_change(&["a", "b", "a"], true), Ok((2, 2)));
    assert!(h.deltas(1).is_empty(), "nothing before the sync");
    h.sync();
    let expected = vec![(1, 1, "a".to_string()), (2, 1, "b".to_string())];
    assert_eq!(h.deltas(1), expected);
    assert_eq!(h.deltas(2), expected);
    assert!(h.got(3).is_empty(), "cross nodes get no whitelist");
    assert_eq!(h.c.whitelist_change(&["a", "zz"], false), Ok((1, 3)));
    h.sync();
    assert_eq!(h.deltas(1), [(3, 2, "a".to_string())]);
    // A node coming online gets the snapshot at the current version.
    h.login(4, 1, 103);
    h.feed(4, &game_info(103, "S103", "p", 0, 0));
    let got = h.got(4);
    assert_eq!(got[..2], [Got::StatusPush(0), Got::Snapshot(3, 1, 1)]);
    // Bad entries are refused whole.
    assert!(matches!(
        h.c.whitelist_change(&["ok", ""], true),
        Err(OperatorError::BadRequest(_))
    ));
    let long = "x".repeat(crate::state::MAX_ENTRY_LEN + 1);
    assert!(h.c.whitelist_change(&[&long], true).is_err());
    assert_eq!(h.c.whitelist().version, 3);
}

#[test]
fn maintenance_is_pushed_on_change_and_drives_the_status() {
    let mut h = H::with(Config {
        busy_threshold: 10,
        full_threshold: 20,
        ..config()
    });
    assert_eq!(h.c.game_status(101), GameStatus::Offline);
    h.game(1, 101, "p");
    assert_eq!(h.c.game_status(101), GameStatus::Normal);
    let mut report = Vec::new();
    StatusReport { online: 10 }.encode(&mut report);
    h.feed(1, &report);
    assert_eq!(h.c.game_status(101), GameStatus::Busy);
    report.clear();
    StatusReport { online: 25 }.encode(&mut report);
    h.feed(1, &report);
    assert_eq!(h.c.game_status(101), GameStatus::Full);
    assert_eq!(h.c.set_maintenance(101, true), Ok(true));
    h.sync();
    assert_eq!(h.got(1), [Got::StatusPush(1)]);
    assert_eq!(h.c.game_status(101), GameStatus::Maintenance);
    assert_eq!(h.c.set_maintenance(101, true), Ok(false), "no change");
    h.sync();
    assert!(h.got(1).is_empty());
    // A flag set for a node not yet connected is in its welcome.
    assert_eq!(h.c.set_maintenance(102, true), Ok(true));
    h.sync();
    let got = h.game(2, 102, "p");
    assert_eq!(got[0], Got::StatusPush(1));
}

#[test]
fn restore_brings_back_assignments_flags_and_the_whitelist() {
    let mut state = State::default();
    state.assignments.insert(101, (90, 2));
    state.names.insert(101, "S101".into());
    state.whitelist.insert("vip".into());
    state.whitelist_version = 5;
    state.maintenance.insert(101);
    state.capacity.insert(90, 3);
    let mut h = H::new();
    h.c.restore(state);
    // The cross node returns first: its member list already holds 101 at slot 2.
    assert_eq!(h.cross(2, 9, "p", 90, 0), [members(&[(101, "S101", 2)])]);
    assert_eq!(h.c.allocator().cross(90).map(|c| c.capacity), Some(3));
    // A new game node gets slot 1, never 101's slot.
    h.game(3, 102, "p");
    assert_eq!(
        h.c.allocator().game(102).and_then(|g| g.assignment),
        Some((90, 1))
    );
    // 101 returns reporting nothing: the record wins.
    let got = h.game(1, 101, "p");
    assert_eq!(
        got,
        [
            Got::StatusPush(1),
            Got::Snapshot(5, 1, 1),
            assign(90, "p", 2)
        ]
    );
}

#[test]
fn drain_capacity_and_moves_follow_the_operator() {
    let mut h = H::new(); // default capacity 2
    h.cross(1, 9, "p", 90, 0);
    h.cross(2, 8, "p", 80, 0);
    h.game(3, 101, "p"); // 80 (tie -> lowest id)
    h.sync();
    assert_eq!(
        h.c.allocator().game(101).and_then(|g| g.assignment),
        Some((80, 1))
    );
    h.c.set_cross_drain(80, true, &mut h.out).expect("drain");
    h.sync();
    h.game(4, 102, "p");
    h.game(5, 103, "p");
    assert_eq!(
        h.c.allocator().game(102).and_then(|g| g.assignment),
        Some((90, 1)),
        "a draining cross gets no new game node"
    );
    assert_eq!(h.c.waiting("p"), Vec::<u32>::new());
    h.game(6, 104, "p");
    assert_eq!(h.c.waiting("p"), [104], "90 is full, 80 drains");
    assert!(matches!(
        h.c.move_game(101, 80, 0, &mut h.out),
        Err(OperatorError::Conflict(_))
    ));
    // Raising 90's capacity lets 104 in at once.
    h.c.set_cross_capacity(90, 3, &mut h.out).expect("capacity");
    h.sync();
    assert_eq!(
        h.c.allocator().game(104).and_then(|g| g.assignment),
        Some((90, 3))
    );
    // Moving 101 from 80 to 90 is refused (full); undrain, then move 102 to 80 slot 5.
    assert!(matches!(
        h.c.move_game(101, 90, 0, &mut h.out),
        Err(OperatorError::Conflict(_))
    ));
    h.c.set_cross_drain(80, false, &mut h.out).expect("undrain");
    h.sync();
    h.got(4);
    h.got(1);
    h.got(2);
    assert_eq!(h.c.move_game(102, 80, 5, &mut h.out), Ok((80, 5)));
    assert!(h.got(4).is_empty(), "held until durable");
    h.sync();
    assert_eq!(h.got(4), [assign(80, "p", 5)]);
    h.settle();
    assert_eq!(
        h.got(1),
        [members(&[(103, "S103", 2), (104, "S104", 3)])],
        "90 lost 102"
    );
    assert_eq!(h.got(2), [members(&[(101, "S101", 1), (102, "S102", 5)])]);
    assert!(matches!(
        h.c.move_game(999, 80, 0, &mut h.out),
        Err(OperatorError::NotFound(_))
    ));
    assert!(matches!(
        h.c.set_cross_capacity(12345, 1, &mut h.out),
        Err(OperatorError::NotFound(_))
    ));
}

#[test]
fn events_of_one_turn_announce_members_after_the_sync_and_fold_the_rest() {
    let mut h = H::new(); // default capacity 2
    h.cross(1, 9, "p", 90, 0);
    h.settle();
    h.login(2, 1, 101);
    h.login(3, 1, 102);
    h.got(2);
    h.got(3);
    h.feed_unsynced(2, &game_info(101, "S101", "p", 0, 0));
    h.feed_unsynced(3, &game_info(102, "S102", "p", 0, 0));
    assert!(h.got(1).is_empty());
    h.sync();
    assert_eq!(
        h.got(1),
        [members(&[(101, "S101", 1)])],
        "the first change's list, as if sent when it happened"
    );
    h.settle();
    assert_eq!(
        h.got(1),
        [members(&[(101, "S101", 1), (102, "S102", 2)])],
        "the second change folded into the list at the window's end"
    );
    let welcomed = |slot| {
        [
            Got::StatusPush(0),
            Got::Snapshot(0, 1, 0),
            assign(90, "p", slot),
        ]
    };
    assert_eq!(h.got(2), welcomed(1));
    // 102's welcome came while 101's record was pending: it waited too, in order.
    assert_eq!(h.got(3), welcomed(2));
}

#[test]
fn held_frames_never_reach_a_connection_that_changed_hands() {
    let mut h = H::new();
    h.cross(1, 9, "p", 90, 0);
    h.login(2, 1, 101);
    h.got(2);
    h.feed_unsynced(2, &game_info(101, "S101", "p", 0, 0));
    h.c.journal_failed();
    // 101 leaves; its connection id is reused by another game node while the disk is full.
    h.c.closed(2, h.now, &mut h.out, &mut h.app);
    h.open(2);
    h.feed_unsynced(2, &auth(1, 555, T0 as u32, TOKEN));
    h.feed_unsynced(2, &game_info(555, "S555", "p", 0, 0));
    h.got(2);
    h.c.journal_synced(&mut h.out);
    let got = h.got(2);
    assert!(
        !got.contains(&assign(90, "p", 1)),
        "101's CROSS_ASSIGN went to 555: {got:?}"
    );
}

// ---- allowlist and AUTH failure throttling ----

#[test]
fn addresses_off_the_allowlist_get_code_4_before_any_other_check() {
    let mut h = H::with(Config {
        allow: vec!["10.0.0.0/8".parse().expect("cidr")],
        ..config()
    });
    let outside = SocketAddr::from(([127, 0, 0, 1], 4000));
    let inside = SocketAddr::from(([10, 9, 8, 7], 4000));
    h.c.open(1, outside, h.now);
    // Even a malformed AUTH (which would be 6) gets 4: the address is checked first.
    h.feed(1, &[0, 3, 0, 1, 0]);
    assert_eq!(h.got(1), [Got::AuthResult(4)]);
    assert!(h.is_closed(1));
    h.c.open(2, inside, h.now);
    h.feed(2, &auth(1, 7, T0 as u32, TOKEN));
    assert_eq!(h.got(2), [Got::AuthResult(0)]);
}

#[test]
fn a_node_that_keeps_failing_auth_does_not_lock_out_its_neighbours() {
    let mut h = H::with(Config {
        auth_fail_limit: 3,
        auth_fail_window: 10,
        ..config()
    });
    let host = SocketAddr::from(([127, 0, 0, 9], 4000));
    for conn in 1..=3 {
        assert!(h.c.admits(host, h.now));
        h.c.open(conn, host, h.now);
        h.feed(conn, &auth(1, 7, T0 as u32, "wrong-token"));
        assert_eq!(h.got(conn), [Got::AuthResult(1)]);
        h.release(conn);
    }
    assert_eq!(h.c.stats().identities_blocked, 1);
    assert_eq!(h.c.stats().addresses_blocked, 0);
    // The failing identity: accepted, its AUTH closed without a word, even signed right.
    assert!(h.c.admits(host, h.now), "the address is not blocked");
    h.c.open(4, host, h.now);
    h.feed(4, &auth(1, 7, T0 as u32, TOKEN));
    assert_eq!(h.got(4), []);
    assert!(h.is_closed(4));
    h.release(4);
    assert_eq!(h.c.stats().connections_throttled, 1);
    // Its neighbours on the same host (another id, or the same id as a cross node) log in.
    h.c.open(5, host, h.now);
    h.feed(5, &auth(1, 8, T0 as u32, TOKEN));
    assert_eq!(h.got(5), [Got::AuthResult(0)]);
    h.c.open(6, host, h.now);
    h.feed(6, &auth(2, 7, T0 as u32, TOKEN));
    assert_eq!(h.got(6), [Got::AuthResult(0)]);
    h.advance(10_000);
    h.c.open(7, host, h.now);
    h.feed(7, &auth(1, 7, T0 as u32 + 10, TOKEN));
    assert_eq!(h.got(7), [Got::AuthResult(0)], "the window ended");
}

#[test]
fn an_address_that_floods_bad_auths_is_refused_at_accept_until_its_window_ends() {
    let mut h = H::with(Config {
        auth_fail_limit: 3,
        auth_fail_window: 10,
        ..config()
    });
    let bad = SocketAddr::from(([127, 0, 0, 9], 4000));
    let good = SocketAddr::from(([127, 0, 0, 10], 4000));
    let budget = 3 * guard::ADDRESS_BUDGET_FACTOR as usize;
    for conn in 1..=budget {
        assert!(
            h.c.admits(bad, h.now),
            "failure {conn} is within the budget"
        );
        h.c.open(conn, bad, h.now);
        if conn % 2 == 0 {
            // Malformed (truncated) and ever-new identities spend the same budget.
            h.feed(conn, &[0, 3, 0, 1, 0]);
            assert_eq!(h.got(conn), [Got::AuthResult(6)]);
        } else {
            h.feed(conn, &auth(1, conn as u32, T0 as u32, "wrong-token"));
            assert_eq!(h.got(conn), [Got::AuthResult(1)]);
        }
        h.release(conn);
    }
    assert!(!h.c.admits(bad, h.now), "blocked at the address budget");
    assert!(h.c.admits(good, h.now), "other addresses are not affected");
    assert_eq!(h.c.stats().addresses_blocked, 1);
    assert_eq!(h.c.stats().connections_throttled, 1);
    h.advance(10_000);
    assert!(h.c.admits(bad, h.now), "the window ended");
}

/// A handler that uses every part of its context.
#[derive(Default)]
struct Busy {
    online: Vec<String>,
    fired: Vec<u64>,
}

impl Handler for Busy {
    fn node_online(&mut self, ctx: &mut Context<'_>, node: NodeKey, info: &OnlineInfo<'_>) {
        self.online.push(match info {
            OnlineInfo::Game {
                serv_name,
                cross_plat,
                addr,
                open_time,
            } => {
                format!("{node} {serv_name} {cross_plat} {addr} {open_time}")
            }
            OnlineInfo::Cross {
                cross_server_id,
                cross_node_name,
                cross_plat,
                capacity,
            } => {
                format!("{node} {cross_server_id} {cross_node_name} {cross_plat} {capacity}")
            }
        });
        if node.node_type == NodeType::Game {
            // Tell the game node's cross node later (101 after 20 ms, 102 after 40 ms: timers
            // due in the same 10 ms tick have no order).
            ctx.set_timer((node.node_id as u64 - 100) * 20, node.node_id as u64);
        }
    }

    fn timer(&mut self, ctx: &mut Context<'_>, token: u64) {
        self.fired.push(token);
        let serv = token as u32;
        if let Some(cross) = ctx.cross_of(serv) {
            let _ = ctx.send(cross, 0x2000, &serv.to_be_bytes());
        }
        let _ = ctx.send_to_platform("p", 0x2001, b"p only");
        let _ = ctx.send_to_all(None, 0x2002, b"all");
    }

    fn app_command(&mut self, ctx: &mut Context<'_>, _from: NodeKey, cmd: u16, _body: &[u8]) {
        // A timer set and cancelled never fires.
        let id = ctx.set_timer(10, 999);
        assert!(ctx.cancel_timer(id));
        assert!(!ctx.cancel_timer(id), "already cancelled");
        assert_eq!(ctx.members_of(90), [(1, 101)]);
        assert!(ctx.now_ms() > 0);
        assert_eq!(
            ctx.send_to_all(None, cmd, &[0; 70_000]),
            Err(SendError::TooLarge)
        );
        assert_eq!(
            ctx.send_to_platform("p", 0x10, b""),
            Err(SendError::NotAppCommand)
        );
    }
}

#[test]
fn handlers_see_infos_set_timers_and_reach_platforms_crosses_and_everyone() {
    let mut h = H::new();
    let mut busy = Busy::default();
    let feed = |h: &mut H, busy: &mut Busy, conn: ConnId, frame: &[u8]| {
        let (payload, _) = proto::parse_frame(frame, 65535)
            .expect("valid")
            .expect("whole");
        h.c.handle_frame(conn, payload, h.now, &mut h.out, busy);
        if !h.c.pending_journal().is_empty() {
            h.c.journal_synced(&mut h.out);
        }
    };
    for (conn, node_type, id) in [(1, 2, 9), (2, 1, 101), (3, 1, 102)] {
        h.open(conn);
        feed(
            &mut h,
            &mut busy,
            conn,
            &auth(node_type, id, T0 as u32, TOKEN),
        );
    }
    feed(&mut h, &mut busy, 1, &cross_info(9, "p", 90, 0, &[]));
    feed(&mut h, &mut busy, 2, &game_info(101, "S101", "p", 0, 0));
    feed(&mut h, &mut busy, 3, &game_info(102, "S102", "q", 0, 0));
    assert_eq!(
        busy.online,
        [
            "cross 9 90 cross90@host p 0",
            "game 101 S101 p a:1 1",
            "game 102 S102 q a:1 1"
        ]
    );
    h.got(1);
    h.got(2);
    h.got(3);
    h.now.mono_ms += 60;
    h.c.handle_timeout(h.now, &mut h.out, &mut busy);
    assert_eq!(busy.fired, [101, 102]);
    // 101's cross node heard about 101; only 101 is on platform p; everyone got "all".
    assert_eq!(
        h.got(1),
        [
            Got::App(0x2000, 101u32.to_be_bytes().to_vec()),
            Got::App(0x2002, b"all".to_vec()),
            Got::App(0x2002, b"all".to_vec())
        ]
    );
    assert_eq!(
        h.got(2),
        [
            Got::App(0x2001, b"p only".to_vec()),
            Got::App(0x2002, b"all".to_vec()),
            Got::App(0x2001, b"p only".to_vec()),
            Got::App(0x2002, b"all".to_vec())
        ]
    );
    assert_eq!(
        h.got(3),
        [
            Got::App(0x2002, b"all".to_vec()),
            Got::App(0x2002, b"all".to_vec())
        ]
    );
    let mut app = Vec::new();
    proto::Message::App {
        cmd: 0x1234,
        body: b"",
    }
    .encode(&mut app)
    .expect("fits");
    feed(&mut h, &mut busy, 2, &app);
    h.now.mono_ms += 100;
    h.c.handle_timeout(h.now, &mut h.out, &mut busy);
    assert_eq!(busy.fired, [101, 102], "the cancelled timer never fired");
}

/// A handler that misbehaves: re-arms a 0 ms timer from inside `timer`, panics on command
/// 0x1001 and in `node_online` of node 666, and cancels a timer id after it went stale.
#[derive(Default)]
struct Hostile {
    fired: u32,
    stale: Option<TimerId>,
    stale_cancelled: Option<bool>,
}

impl Handler for Hostile {
    fn node_online(&mut self, _ctx: &mut Context<'_>, node: NodeKey, _info: &OnlineInfo<'_>) {
        if node.node_id == 666 {
            panic!("node_online exploded");
        }
    }

    fn timer(&mut self, ctx: &mut Context<'_>, token: u64) {
        if token == 1 {
            self.fired += 1;
            // Bounded so that the test ends even where the loop would spin.
            if self.fired < 1_000 {
                ctx.set_timer(0, 1);
            }
        }
    }

    fn app_command(&mut self, ctx: &mut Context<'_>, _from: NodeKey, cmd: u16, _body: &[u8]) {
        match cmd {
            0x1001 => panic!("app_command exploded"),
            0x1002 => self.stale = Some(ctx.set_timer(10, 2)),
            0x1003 => self.stale_cancelled = self.stale.map(|id| ctx.cancel_timer(id)),
            0x1004 => {
                ctx.set_timer(0, 1);
            }
            _ => {}
        }
    }
}

fn app(cmd: u16) -> Vec<u8> {
    let mut f = Vec::new();
    proto::Message::App { cmd, body: b"" }
        .encode(&mut f)
        .expect("fits");
    f
}

fn feed_with(h: &mut H, handler: &mut dyn Handler, conn: ConnId, frame: &[u8]) {
    let (payload, _) = proto::parse_frame(frame, 65535)
        .expect("valid")
        .expect("whole");
    h.c.handle_frame(conn, payload, h.now, &mut h.out, handler);
    h.sync();
}

fn hostile_game(h: &mut H, hostile: &mut Hostile, conn: ConnId, id: u32) {
    h.open(conn);
    feed_with(h, hostile, conn, &auth(1, id, T0 as u32, TOKEN));
    feed_with(h, hostile, conn, &game_info(id, "S", "p", 0, 0));
    h.got(conn);
}

#[test]
fn a_timer_set_while_timers_fire_is_due_no_earlier_than_the_next_turn() {
    let mut h = H::new();
    let mut hostile = Hostile::default();
    hostile_game(&mut h, &mut hostile, 1, 101);
    feed_with(&mut h, &mut hostile, 1, &app(0x1004));
    h.now.mono_ms += 10;
    h.c.handle_timeout(h.now, &mut h.out, &mut hostile);
    assert_eq!(
        hostile.fired, 1,
        "one turn, one firing: the re-armed timer waits"
    );
    for turn in 2..=5 {
        let next = h.c.next_timeout().expect("the timer is scheduled");
        assert!(next > h.now.mono_ms, "due in the future, not at once");
        h.now.mono_ms = next;
        h.c.handle_timeout(h.now, &mut h.out, &mut hostile);
        assert_eq!(hostile.fired, turn);
    }
}

#[test]
fn a_panicking_handler_is_caught_counted_and_the_node_served_on() {
    let mut h = H::new();
    let mut hostile = Hostile::default();
    hostile_game(&mut h, &mut hostile, 1, 101);
    feed_with(&mut h, &mut hostile, 1, &app(0x1001));
    assert_eq!(h.c.stats().handler_panics, 1);
    assert!(!h.is_closed(1));
    feed_with(&mut h, &mut hostile, 1, &hb(7));
    assert_eq!(h.got(1), [Got::Ack(7)], "still served");
    // A panic in node_online: the node stays online all the same.
    h.open(2);
    feed_with(&mut h, &mut hostile, 2, &auth(1, 666, T0 as u32, TOKEN));
    feed_with(&mut h, &mut hostile, 2, &game_info(666, "S", "p", 0, 0));
    assert_eq!(h.c.stats().handler_panics, 2);
    assert!(!h.is_closed(2));
    assert_eq!(h.c.registered(), 2);
}

#[test]
fn a_stale_timer_id_cancels_nothing_not_even_a_heartbeat_timer() {
    let mut h = H::new();
    let mut hostile = Hostile::default();
    hostile_game(&mut h, &mut hostile, 1, 101);
    feed_with(&mut h, &mut hostile, 1, &app(0x1002));
    h.now.mono_ms += 20;
    h.c.handle_timeout(h.now, &mut h.out, &mut hostile);
    // The fired timer's slot is reused by a new session's auth/heartbeat timer.
    hostile_game(&mut h, &mut hostile, 2, 102);
    feed_with(&mut h, &mut hostile, 1, &app(0x1003));
    assert_eq!(hostile.stale_cancelled, Some(false));
    // Node 102 stays silent: its heartbeat timer still kicks it.
    for _ in 0..40 {
        h.now.mono_ms += 100;
        feed_with(&mut h, &mut hostile, 1, &hb(1));
        h.c.handle_timeout(h.now, &mut h.out, &mut hostile);
    }
    assert!(
        h.got(2).contains(&Got::Kick(2)),
        "the silent node was kicked"
    );
}

#[test]
fn a_reload_keeps_the_heartbeat_timeout_each_session_was_told() {
    // Told 4 s / 9 s; the reload says 1 s / 2 s.
    let mut h = H::with(Config {
        heartbeat_interval: 4,
        heartbeat_timeout: 9,
        ..config()
    });
    h.game(1, 101, "p");
    h.c.reconfigure(&Config {
        heartbeat_interval: 1,
        heartbeat_timeout: 2,
        ..config()
    });
    // The old session follows the interval it was told: a heartbeat every 4 s is fine.
    for _ in 0..5 {
        h.advance(4_000);
        h.feed(1, &hb(1));
    }
    assert!(
        !h.got(1).contains(&Got::Kick(2)),
        "announced values govern the session"
    );
    assert!(!h.is_closed(1));
    // A session that authenticates after the reload gets (and is held to) the new values.
    h.game(2, 102, "p");
    h.advance(1_000);
    h.feed(1, &hb(2));
    h.advance(1_100);
    assert!(h.got(2).contains(&Got::Kick(2)), "2 s of silence kicks it");
    // And the old one is still held to 9 s.
    h.feed(1, &hb(3));
    h.advance(8_000);
    assert!(!h.is_closed(1));
    h.advance(1_100);
    assert!(h.got(1).contains(&Got::Kick(2)), "after 9 s of silence");
}

/// Batches in flight, event order of records, restored facts.
mod durable;
#[test]
fn a_new_cross_plat_past_the_platform_table_is_a_clear_protocol_error() {
    let mut h = H::new();
    let big = "p".repeat(60_000);
    let mut id = 0;
    loop {
        id += 1;
        h.open(id as usize);
        h.feed(id as usize, &auth(1, id, T0 as u32, TOKEN));
        h.feed(
            id as usize,
            &game_info(id, "g", &format!("{id}{big}"), 0, 0),
        );
        let got = h.got(id as usize);
        if got.last() == Some(&Got::Kick(5)) {
            break;
        }
        assert!(id < 100, "the table never filled");
    }
    assert!(
        id > 60,
        "about 4 MiB of names fit before the refusal ({id})"
    );
    // A platform already known is still accepted.
    h.open(500);
    h.feed(500, &auth(1, 500, T0 as u32, TOKEN));
    h.feed(500, &game_info(500, "g", &format!("1{big}"), 0, 0));
    assert!(!h.got(500).contains(&Got::Kick(5)));
}

#[test]
fn a_burst_of_arrivals_costs_a_cross_node_a_few_complete_lists() {
    let mut h = H::with(Config {
        max_connections: 10_000,
        ..config()
    });
    assert_eq!(
        h.cross(1, 9, "p", 90, 1000),
        [members(&[])],
        "first list at once"
    );
    // 300 game nodes arrive, 1 ms apart: 300 ms of changes.
    let mut lists = Vec::new();
    for i in 0..300u32 {
        h.game(10 + i as usize, 1000 + i, "p");
        h.advance(1);
        lists.extend(h.got(1));
    }
    h.settle();
    lists.extend(h.got(1));
    assert!(
        (2..=4).contains(&lists.len()),
        "300 ms of arrivals folded into {} lists",
        lists.len()
    );
    let want: Vec<(u32, String, u16)> = (0..300u32)
        .map(|i| (1000 + i, format!("S{}", 1000 + i), i as u16 + 1))
        .collect();
    assert_eq!(
        lists.last(),
        Some(&Got::Members(want)),
        "the last list is current"
    );
    // Quiet again: the next change goes out at once.
    h.advance(1_000);
    h.game(5000, 5000, "p");
    assert_eq!(h.got(1).len(), 1);
}

#[test]
fn a_folded_change_waits_at_most_the_fold_window() {
    let mut h = H::new();
    h.cross(1, 9, "p", 90, 10);
    h.game(2, 101, "p"); // inside the window CROSS_INFO's list opened
    assert!(h.got(1).is_empty(), "folded");
    h.advance(super::fold::FOLD_MS - 1);
    assert!(h.got(1).is_empty(), "still inside the window");
    h.advance(1 + TICK_MS);
    assert_eq!(h.got(1), [members(&[(101, "S101", 1)])]);
}

#[test]
fn list_generation_moves_only_with_what_a_server_list_shows() {
    let mut h = H::with(Config {
        busy_threshold: 10,
        full_threshold: 20,
        ..config()
    });
    let mut last = h.c.list_generation();
    let mut moved = |h: &H| {
        let now = h.c.list_generation();
        let did = now != last;
        last = now;
        did
    };
    h.game(1, 101, "p");
    assert!(moved(&h), "online");
    let mut report = Vec::new();
    for (online, shows) in [(5, false), (10, true), (15, false), (20, true), (3, true)] {
        report.clear();
        StatusReport { online }.encode(&mut report);
        h.feed(1, &report);
        assert_eq!(moved(&h), shows, "{online} players");
    }
    h.feed(1, &hb(7));
    assert!(!moved(&h), "a heartbeat");
    h.c.whitelist_change(&["vip"], true).expect("writable");
    assert!(!moved(&h), "the whitelist is not in the list");
    assert_eq!(h.c.set_maintenance(101, true), Ok(true));
    assert!(moved(&h), "maintenance");
    assert_eq!(h.c.set_maintenance(101, true), Ok(false));
    assert!(!moved(&h), "no change");
    h.release(1);
    assert!(moved(&h), "offline");
}

fn game_opening_at(h: &mut H, conn: ConnId, id: u32, plat: &str, open_time: u32) {
    h.login(conn, 1, id);
    let mut v = Vec::new();
    GameInfo {
        serv_id: id,
        serv_name: "S",
        open_time,
        cross_plat: plat,
        cross_server_id: 0,
        cross_pos: 0,
        addr: "a:1",
    }
    .encode(&mut v)
    .expect("fits");
    h.feed(conn, &v);
    h.got(conn);
}

fn statuses(list: &crate::admin::public::Rendered) -> Vec<(u64, String, bool)> {
    let v: serde_json::Value = serde_json::from_slice(&list.body).expect("json");
    v["servers"]
        .as_array()
        .expect("list")
        .iter()
        .map(|s| {
            (
                s["id"].as_u64().expect("id"),
                s["status"].as_str().expect("status").to_string(),
                s["recommended"] == true,
            )
        })
        .collect()
}

#[test]
fn public_lists_render_once_per_change_and_at_most_once_a_second() {
    use crate::admin::public::{PublicLists, PublicSettings, MIN_RENDER_INTERVAL_MS};
    let mut h = H::with(Config {
        busy_threshold: 10,
        full_threshold: 20,
        ..config()
    });
    let mut lists = PublicLists::new(PublicSettings {
        new_server_secs: 100,
        max_age_secs: 5,
    });
    game_opening_at(&mut h, 1, 101, "p", T0 as u32 - 1_000);
    game_opening_at(&mut h, 2, 102, "p", T0 as u32 + 5);
    let list = |lists: &mut PublicLists, h: &H| lists.list(&h.c, "p", h.now).cloned();
    let first = list(&mut lists, &h).expect("known platform");
    assert_eq!(
        statuses(&first),
        [
            (101, "normal".into(), true),
            (102, "upcoming".into(), false)
        ]
    );
    for _ in 0..100 {
        assert_eq!(list(&mut lists, &h).as_ref(), Some(&first));
    }
    assert_eq!(lists.renders(), 1, "unchanged: rendered once");
    assert!(lists.list(&h.c, "nowhere", h.now).is_none());
    assert_eq!(
        lists.renders(),
        1,
        "unknown platforms are not rendered into the cache"
    );
    // A change within the second is served stale, then rendered once.
    let mut report = Vec::new();
    StatusReport { online: 10 }.encode(&mut report);
    h.feed(1, &report);
    h.now.mono_ms += MIN_RENDER_INTERVAL_MS - 1;
    assert_eq!(list(&mut lists, &h).as_ref(), Some(&first));
    h.now.mono_ms += 1;
    let busy = list(&mut lists, &h).expect("list");
    assert_eq!(statuses(&busy)[0], (101, "busy".into(), true));
    assert_ne!(busy.etag, first.etag);
    list(&mut lists, &h);
    assert_eq!(lists.renders(), 2);
    // Time alone: 102 opens (new, and the newest enterable), later stops being new.
    h.now.mono_ms += 10_000;
    h.now.unix_secs += 5;
    let opened = list(&mut lists, &h).expect("list");
    assert_eq!(
        statuses(&opened),
        [(101, "busy".into(), false), (102, "new".into(), true)]
    );
    h.now.mono_ms += 200_000;
    h.now.unix_secs += 100;
    let old = list(&mut lists, &h).expect("list");
    assert_eq!(statuses(&old)[1], (102, "normal".into(), true));
    assert_eq!(lists.renders(), 4);
    // Maintenance and offline: nothing enterable is left but 101.
    assert_eq!(h.c.set_maintenance(102, true), Ok(true));
    h.now.mono_ms += MIN_RENDER_INTERVAL_MS;
    assert_eq!(
        statuses(list(&mut lists, &h).as_ref().expect("list")),
        [
            (101, "busy".into(), true),
            (102, "maintenance".into(), false)
        ]
    );
    h.release(1);
    h.now.mono_ms += MIN_RENDER_INTERVAL_MS;
    assert_eq!(
        statuses(list(&mut lists, &h).as_ref().expect("list")),
        [
            (101, "offline".into(), false),
            (102, "maintenance".into(), false)
        ]
    );
}

#[test]
fn public_answers_carry_the_etag_and_a_match_is_304() {
    use crate::admin::http::parse_request;
    use crate::admin::public::{PublicLists, PublicSettings};
    let mut h = H::new();
    h.game(1, 101, "p 1");
    let mut lists = PublicLists::new(PublicSettings {
        new_server_secs: 0,
        max_age_secs: 42,
    });
    let mut ask = |h: &H, head: &str| {
        let (req, _) = parse_request(head.as_bytes()).expect("ok").expect("whole");
        let mut out = Vec::new();
        let answer = lists.answer(&req, &h.c, h.now, true, &mut out);
        if let Some(body) = &answer.body {
            out.extend_from_slice(body);
        }
        (answer.status, String::from_utf8(out).expect("utf8"))
    };
    let (status, text) = ask(&h, "GET /public/servers/p%201 HTTP/1.1\r\n\r\n");
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("Cache-Control: public, max-age=42\r\n"),
        "{text}"
    );
    let etag = text
        .lines()
        .find_map(|l| l.strip_prefix("ETag: "))
        .expect("an ETag")
        .to_string();
    let body = text.split_once("\r\n\r\n").expect("head").1;
    assert!(body.contains("\"id\":101"), "{body}");
    assert!(!body.contains("127.0.0.1"), "no peer addresses: {body}");
    let (status, text) = ask(
        &h,
        &format!("GET /public/servers/p%201 HTTP/1.1\r\nIf-None-Match: {etag}\r\n\r\n"),
    );
    assert_eq!(status, 304);
    assert!(text.ends_with("\r\n\r\n") && text.contains(&etag), "{text}");
    assert!(!text.contains("Content-Length"), "{text}");
    let (status, text) = ask(&h, "HEAD /public/servers/p%201 HTTP/1.1\r\n\r\n");
    assert_eq!(status, 200);
    assert!(text.ends_with("\r\n\r\n"), "no body for HEAD: {text}");
    assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
    let (status, text) = ask(&h, "GET /public/servers/other HTTP/1.1\r\n\r\n");
    assert_eq!(status, 200);
    assert!(
        text.ends_with("{\"plat\":\"other\",\"servers\":[]}"),
        "{text}"
    );
    for (head, want) in [
        ("POST /public/servers/p HTTP/1.1\r\n\r\n", 405),
        ("GET /public/servers/ HTTP/1.1\r\n\r\n", 404),
        ("GET /public/servers/a/b HTTP/1.1\r\n\r\n", 404),
        ("GET /api/nodes HTTP/1.1\r\n\r\n", 404),
    ] {
        assert_eq!(ask(&h, head).0, want, "{head}");
    }
}

#[test]
fn public_lists_follow_new_settings_at_once() {
    use crate::admin::public::{PublicLists, PublicSettings};
    let mut h = H::new();
    game_opening_at(&mut h, 1, 101, "p", T0 as u32 - 10);
    let mut lists = PublicLists::new(PublicSettings {
        new_server_secs: 100,
        max_age_secs: 5,
    });
    let first = lists.list(&h.c, "p", h.now).cloned().expect("list");
    assert_eq!(statuses(&first), [(101, "new".into(), true)]);
    let same = PublicSettings {
        new_server_secs: 100,
        max_age_secs: 5,
    };
    lists.reconfigure(same);
    lists.list(&h.c, "p", h.now);
    assert_eq!(lists.renders(), 1, "unchanged settings keep the cache");
    lists.reconfigure(PublicSettings {
        new_server_secs: 0,
        max_age_secs: 5,
    });
    let now = lists.list(&h.c, "p", h.now).cloned().expect("list");
    assert_eq!(
        statuses(&now),
        [(101, "normal".into(), true)],
        "no waiting a second"
    );
}
