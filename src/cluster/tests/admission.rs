//! The allowlist and the AUTH failure throttle: code 4 first, identities and addresses
//! blocked for their window without locking out their neighbours.

use super::*;

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
    let budget = 3 * crate::cluster::admission::ADDRESS_BUDGET_FACTOR as usize;
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
