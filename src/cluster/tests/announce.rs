//! Durability and operator changes: nothing is announced before its records are durable,
//! a failed write holds announcements, whitelist and maintenance reach welcomed game nodes.

use super::*;

fn journal_records(bytes: &[u8]) -> Vec<crate::state::Record> {
    crate::state::record::decode_batch(bytes).expect("own batch decodes")
}

fn server(info: Option<(&str, &str, u32, &str)>, slot: Option<(u32, u16)>) -> crate::state::Record {
    crate::state::Record::Server(crate::state::record::ServerRecord {
        serv: 101,
        name: info.map(|i| i.0.into()),
        facts: info.map(|(_, plat, open_time, addr)| crate::state::GameFacts {
            plat: plat.into(),
            open_time,
            addr: addr.into(),
        }),
        slot,
    })
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
            // Its name and facts from the GAME_INFO (no slot yet), then its whole entry
            // again with the slot the allocator settled: one key in the store.
            server(Some(("S101", "p", 1, "a:1")), None),
            server(Some(("S101", "p", 1, "a:1")), Some((90, 1))),
        ]
    );
    // In one transaction the two are one row.
    assert_eq!(crate::state::keys::ops(&records).len(), 1);
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
