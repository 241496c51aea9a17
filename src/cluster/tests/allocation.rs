//! Cross allocation as nodes see it: assignments, the waiting queue, adoption from reports,
//! renames, cross_server_id clashes, the platform table and CROSS_MEMBERS folding.

use super::*;

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
