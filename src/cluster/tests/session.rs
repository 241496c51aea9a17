//! Session lifecycle on the virtual clock: protocol errors (KICK 5), heartbeats and expiry,
//! the auth timeout, shutdown, frames after close, and the timeout each session was told.

use super::*;

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
        // Out of place and malformed too: still KICK 5 (a truncated second AUTH is not
        // answered with AUTH_RESULT 6).
        (
            "second auth, truncated",
            vec![auth(1, 1, T0 as u32, TOKEN), vec![0, 3, 0, 1, 1]],
        ),
        (
            "second info, truncated",
            vec![
                auth(1, 1, T0 as u32, TOKEN),
                game_info(1, "x", "p", 0, 0),
                vec![0, 3, 0, 2, 0],
            ],
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
        Some(NodeDetails::Game {
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

/// Every login-to-node command, well-formed, as a node might echo it back.
fn login_to_node_frames() -> Vec<(&'static str, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut push = |name, encode: &dyn Fn(&mut Vec<u8>)| {
        let mut f = Vec::new();
        encode(&mut f);
        frames.push((name, f));
    };
    push("AUTH_RESULT", &|f| {
        AuthResult {
            code: 0,
            server_time: T0 as u32,
            heartbeat_interval: 1,
            heartbeat_timeout: 3,
        }
        .encode(f)
    });
    push("CROSS_ASSIGN", &|f| {
        CrossAssign {
            cross_server_id: 1,
            cross_node_name: "c",
            cross_plat: "p",
            cross_pos: 1,
        }
        .encode(f)
        .expect("fits")
    });
    push("CROSS_MEMBERS", &|f| {
        CrossMembers::encode(std::iter::empty(), f).expect("fits")
    });
    push("HEARTBEAT_ACK", &|f| Heartbeat { ts: 7 }.encode_ack(f));
    push("STATUS_PUSH", &|f| StatusPush { maintenance: 0 }.encode(f));
    push("WHITELIST_SNAPSHOT", &|f| {
        proto::WhitelistSnapshot::encode(1, true, ["a"], f).expect("fits")
    });
    push("WHITELIST_DELTA", &|f| {
        proto::WhitelistDelta {
            version: 1,
            op: 1,
            entry: "a",
        }
        .encode(f)
        .expect("fits")
    });
    push("KICK", &|f| Kick { reason: 5 }.encode(f));
    frames
}

#[test]
fn login_to_node_commands_from_a_node_are_protocol_errors_in_every_phase() {
    let frames = login_to_node_frames();
    assert_eq!(frames.len(), 8, "one per login-to-node message");
    let phases: [(&str, &[Vec<u8>]); 3] = [
        ("before AUTH", &[]),
        ("before INFO", &[auth(1, 1, T0 as u32, TOKEN)]),
        (
            "online",
            &[auth(1, 1, T0 as u32, TOKEN), game_info(1, "x", "p", 0, 0)],
        ),
    ];
    for (name, frame) in &frames {
        assert!(
            Message::decode(&frame[2..]).is_ok(),
            "{name}: the frame is well-formed"
        );
        for (phase, before) in phases {
            let mut h = H::new();
            h.open(1);
            for f in before {
                h.feed(1, f);
            }
            h.feed(1, frame);
            let got = h.got(1);
            assert_eq!(got.last(), Some(&Got::Kick(5)), "{name} {phase}: {got:?}");
            assert!(h.is_closed(1), "{name} {phase}");
        }
    }
}

/// `Phase::accepts` is a table over raw command numbers, which the compiler cannot check
/// against `Message`: this pins it, every command of the contract in every phase.
#[test]
fn every_node_to_login_command_is_taken_in_its_phase_and_no_other() {
    use crate::cluster::session::Phase;
    use crate::proto::cmd;
    let all = cmd::NODE_TO_LOGIN
        .into_iter()
        .chain(cmd::LOGIN_TO_NODE)
        .chain([cmd::APP_FIRST, cmd::APP_LAST]);
    use cmd::{APP_FIRST, APP_LAST, AUTH, CROSS_INFO, GAME_INFO, HEARTBEAT, STATUS_REPORT};
    let taken: [(NodeType, Phase, &[u16]); 10] = [
        (NodeType::Game, Phase::Free, &[]),
        (NodeType::Game, Phase::AwaitAuth, &[AUTH]),
        (NodeType::Game, Phase::AwaitInfo, &[HEARTBEAT, GAME_INFO]),
        (
            NodeType::Game,
            Phase::Online,
            &[HEARTBEAT, STATUS_REPORT, APP_FIRST, APP_LAST],
        ),
        (NodeType::Game, Phase::Closed, &[]),
        (NodeType::Cross, Phase::Free, &[]),
        (NodeType::Cross, Phase::AwaitAuth, &[AUTH]),
        (NodeType::Cross, Phase::AwaitInfo, &[HEARTBEAT, CROSS_INFO]),
        (
            NodeType::Cross,
            Phase::Online,
            &[HEARTBEAT, APP_FIRST, APP_LAST],
        ),
        (NodeType::Cross, Phase::Closed, &[]),
    ];
    for (node, phase, takes) in taken {
        for c in all.clone() {
            assert_eq!(
                phase.accepts(c, node),
                takes.contains(&c),
                "{phase:?} of a {node:?} node, command {c:#06x}"
            );
        }
    }
}
