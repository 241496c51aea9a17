//! The embedder API on the virtual clock: application commands, what a handler's context
//! reaches, handler timers, and panics caught at the call.

use super::*;

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

/// A handler that uses every part of its context.
#[derive(Default)]
struct Busy {
    online: Vec<String>,
    fired: Vec<u64>,
}

impl Handler for Busy {
    fn node_online(&mut self, ctx: &mut Context<'_>, node: NodeKey, info: &ReportedInfo<'_>) {
        self.online.push(match info {
            ReportedInfo::Game {
                serv_name,
                cross_plat,
                addr,
                open_time,
            } => {
                format!("{node} {serv_name} {cross_plat} {addr} {open_time}")
            }
            ReportedInfo::Cross {
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
    fn node_online(&mut self, _ctx: &mut Context<'_>, node: NodeKey, _info: &ReportedInfo<'_>) {
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
