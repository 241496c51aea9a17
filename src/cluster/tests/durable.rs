//! Durability on the virtual clock: one batch in flight while the next accumulates, records
//! in event order, what is held for a closed connection, and what a restart restores.

use super::*;
use crate::state::{record, Record, State};

fn records(bytes: &[u8]) -> Vec<Record> {
    record::decode_batch(bytes).expect("own batch decodes")
}

/// Takes the pending batch as the reactor would (and returns its records).
fn take(h: &mut H) -> (u64, Vec<Record>) {
    let mut buf = Vec::new();
    let seq = h.c.take_batch(&mut buf).expect("a batch is pending");
    (seq, records(&buf))
}

fn assigns(records: &[Record]) -> Vec<(u32, u32, u16)> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Server(s) => s.slot.map(|(cross, pos)| (s.serv, cross, pos)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_move_that_frees_a_slot_is_recorded_before_the_waiting_node_that_takes_it() {
    // The reported crash: cross 20 (capacity 1) holds game 500, game 400 waits; cross 10
    // (capacity 1) is known but offline. Moving 500 to 10 lets 400 take 20's slot 1. Written
    // sorted by serv_id, a prefix of the batch held 400 and 500 both in 20/1.
    let mut h = H::new();
    h.cross(1, 10, "p", 10, 1);
    h.release(1);
    h.cross(2, 20, "p", 20, 1);
    h.game(3, 500, "p");
    h.game(4, 400, "p");
    assert_eq!(h.c.waiting("p"), [400]);
    assert_eq!(h.c.move_game(500, 10, 0, &mut h.out), Ok((10, 1)));
    let (_, batch) = take(&mut h);
    assert_eq!(assigns(&batch), [(500, 10, 1), (400, 20, 1)]);
    // Every prefix of the batch is a state that starts.
    let mut state = State::default();
    state.assignments.insert(500, (20, 1));
    for r in &batch {
        state.apply(r);
        state.check().expect("every prefix is valid");
    }
}

#[test]
fn frames_of_the_next_batch_wait_for_it_not_for_the_one_in_flight() {
    let mut h = H::new();
    h.cross(1, 9, "p", 90, 0);
    h.login(2, 1, 101);
    h.feed_unsynced(2, &game_info(101, "S101", "p", 0, 0));
    let (first, _) = take(&mut h);
    // While the first batch is in flight, a second game node is assigned.
    h.login(3, 1, 102);
    h.feed_unsynced(3, &game_info(102, "S102", "p", 0, 0));
    assert_eq!(h.got(2), [Got::StatusPush(0), Got::Snapshot(0, 1, 0)]);
    assert_eq!(h.got(3), [Got::StatusPush(0), Got::Snapshot(0, 1, 0)]);
    assert!(
        h.c.take_batch(&mut Vec::new()).is_none(),
        "one batch in flight"
    );
    h.c.batch_durable(first, &mut h.out);
    assert_eq!(h.got(2), [assign(90, "p", 1)]);
    assert!(h.got(3).is_empty(), "102's assignment is in the next batch");
    let (second, batch) = take(&mut h);
    assert_eq!(assigns(&batch), [(102, 90, 2)]);
    h.c.batch_durable(second, &mut h.out);
    assert_eq!(h.got(3), [assign(90, "p", 2)]);
    // The cross node's fold window ends: one list, complete and current.
    h.now.mono_ms += super::super::fold::FOLD_MS + TICK_MS;
    h.c.handle_timeout(h.now, &mut h.out, &mut h.app);
    let lists = h.got(1);
    assert_eq!(
        lists.last(),
        Some(&members(&[(101, "S101", 1), (102, "S102", 2)]))
    );
    assert_eq!(h.c.durable_seq(), second);
}

#[test]
fn a_welcome_waits_for_an_operator_change_in_flight() {
    let mut h = H::new();
    h.game(1, 101, "p");
    assert_eq!(h.c.whitelist_change(&["alice"], true), Ok((1, 1)));
    let (seq, _) = take(&mut h);
    h.login(2, 1, 102);
    h.feed_unsynced(2, &game_info(102, "S102", "p", 0, 0));
    assert!(
        h.got(2).is_empty(),
        "its snapshot would show an undurable entry"
    );
    h.c.batch_durable(seq, &mut h.out);
    assert_eq!(h.deltas(1), [(1, 1, "alice".to_string())]);
    let (seq, _) = take(&mut h); // 102's own facts
    h.c.batch_durable(seq, &mut h.out);
    assert_eq!(h.got(2), [Got::StatusPush(0), Got::Snapshot(1, 1, 1)]);
}

#[test]
fn what_is_held_for_a_connection_that_closes_is_dropped() {
    let mut h = H::new();
    h.cross(1, 9, "p", 90, 100);
    h.game(2, 101, "p");
    h.release(2);
    // An operator change is in flight and the store is down: every announcement is held.
    assert_eq!(h.c.whitelist_change(&["x"], true), Ok((1, 1)));
    take(&mut h);
    h.c.journal_failed();
    let mut held = Vec::new();
    for _ in 0..50 {
        h.login(2, 1, 101);
        h.feed_unsynced(2, &game_info(101, "S101", "p", 0, 0));
        assert!(
            h.got(2).is_empty(),
            "held: its welcome shows the undurable entry"
        );
        held.push(h.c.held_bytes());
        h.release(2);
    }
    assert!(held[0] > 0, "the CROSS_ASSIGN of a live connection is held");
    assert_eq!(
        held[49], held[0],
        "held bytes do not grow with reconnects: {held:?}"
    );
}

#[test]
fn a_cross_node_announcing_id_zero_is_a_protocol_error() {
    let mut h = H::new();
    h.login(1, 2, 7);
    h.feed(1, &cross_info(7, "p", 0, 10, &[]));
    assert_eq!(h.got(1), [Got::Kick(5)]);
    assert!(h.is_closed(1));
    assert!(h.c.allocator().cross(0).is_none());
}

#[test]
fn restored_facts_answer_returning_nodes_and_refuse_moves_across_platforms() {
    // Before the restart: cross 90 (p) and 80 (q) were heard from, game 101 (p, with a
    // 3,000-byte name) holds 90/1.
    let long_name = "n".repeat(3000);
    let mut before = H::new();
    before.cross(1, 9, "p", 90, 5);
    before.cross(2, 8, "q", 80, 5);
    before.login(3, 1, 101);
    before.feed(3, &game_info(101, &long_name, "p", 0, 0));
    let mut state = State::default();
    records(&before.synced).iter().for_each(|r| state.apply(r));
    assert_eq!(state.names[&101].len(), 3000, "names are stored whole");
    assert_eq!(state.crosses[&80].plat.as_ref(), "q");
    assert_eq!(state.games[&101].plat.as_ref(), "p");

    let mut after = H::new();
    after.c.restore(state);
    // 101 returns while 90 is still offline: told its cross node at once.
    after.login(1, 1, 101);
    after.feed_unsynced(1, &game_info(101, &long_name, "p", 0, 0));
    assert_eq!(
        after.got(1),
        [
            Got::StatusPush(0),
            Got::Snapshot(0, 1, 0),
            assign(90, "p", 1)
        ]
    );
    assert!(
        after.c.pending_journal().is_empty(),
        "nothing new to record: the name is the same after the restart"
    );
    // Moving it onto the other platform's cross node is refused, as before the restart.
    assert_eq!(
        after.c.move_game(101, 80, 0, &mut after.out),
        Err(OperatorError::BadRequest(
            "the cross node serves another platform".into()
        ))
    );
}

#[test]
fn a_held_welcome_never_shows_a_whitelist_change_that_is_not_durable() {
    let mut h = H::new();
    h.game(1, 101, "p");
    assert_eq!(h.c.whitelist_change(&["w1"], true), Ok((1, 1)));
    let (s1, _) = take(&mut h);
    h.login(2, 1, 102);
    h.feed_unsynced(2, &game_info(102, "S102", "p", 0, 0));
    assert!(h.got(2).is_empty(), "held behind w1");
    h.c.batch_durable(s1, &mut h.out);
    let (s2, _) = take(&mut h); // 102's own facts
    assert_eq!(h.c.whitelist_change(&["w2"], true), Ok((1, 2)));
    h.c.batch_durable(s2, &mut h.out);
    assert!(
        h.got(2).is_empty(),
        "w2 is not durable: no welcome showing it yet"
    );
    let (s3, _) = take(&mut h);
    h.c.batch_durable(s3, &mut h.out);
    assert_eq!(h.got(2), [Got::StatusPush(0), Got::Snapshot(2, 1, 2)]);
    assert!(
        h.deltas(2).is_empty(),
        "w2 came in the snapshot, not again as a delta"
    );
    assert_eq!(
        h.deltas(1),
        [(1, 1, "w1".to_string()), (2, 1, "w2".to_string())]
    );
}
