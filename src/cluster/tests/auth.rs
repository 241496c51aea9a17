//! AUTH on the virtual clock: AUTH_RESULT codes and settings, token rotation, capacity and
//! duplicate logins.

use super::*;

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
