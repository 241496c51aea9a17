//! Property tests (bounded so CI stays fast): every message survives encode -> frame ->
//! decode -> encode byte for byte, and random interleavings of connects, AUTHs, INFOs,
//! heartbeats, disconnects, operator moves, capacity and drain changes and journal
//! failures keep the cluster's invariants:
//! - no slot is held by two game nodes;
//! - every cross node's member list agrees with the game nodes' assignments;
//! - the registry holds one connection per node, and only live ones;
//! - a platform's waiting queue is in arrival order, and holds only online, unassigned nodes.

use login_node::cluster::{Cluster, ConnId, NoHandler, NodeDetails, Now, Outbox};
use login_node::proto::{
    self, Auth, AuthResult, CrossAssign, CrossInfo, CrossMembers, GameInfo, Heartbeat, Kick,
    Member, Message, StatusPush, StatusReport, WhitelistDelta, WhitelistSnapshot,
};
use login_node::Config;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;

fn any_str() -> impl Strategy<Value = String> {
    prop::string::string_regex("[a-z0-9@._\u{4e00}-\u{4e10} -]{0,24}").expect("regex")
}

/// Frames a message's encoding and decodes it back; the re-encoding must be identical.
fn round_trip(frame: &[u8]) {
    let (payload, used) = proto::parse_frame(frame, 65_535)
        .expect("a valid frame")
        .expect("whole");
    assert_eq!(used, frame.len());
    let msg = Message::decode(payload).expect("decodes");
    let mut again = Vec::new();
    msg.encode(&mut again).expect("re-encodes");
    assert_eq!(again, frame, "{msg:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn node_messages_round_trip(
        node_type in any::<u8>(), id in any::<u32>(), time in any::<u32>(), sign in any::<[u8; 16]>(),
        plat in any_str(), name in any_str(), addr in any_str(),
        open_time in any::<u32>(), cross in any::<u32>(), pos in any::<u16>(),
        cap in any::<u16>(), list in prop::collection::vec(any::<u32>(), 0..50),
        ts in any::<u64>(), online in any::<u32>(),
    ) {
        let mut f = Vec::new();
        Auth { node_type, node_id: id, plat: &plat, time, sign }.encode(&mut f).expect("fits");
        round_trip(&f);
        f.clear();
        GameInfo { serv_id: id, serv_name: &name, open_time, cross_plat: &plat,
                   cross_server_id: cross, cross_pos: pos, addr: &addr }.encode(&mut f).expect("fits");
        round_trip(&f);
        f.clear();
        CrossInfo { id, cross_plat: &plat, cross_server_id: cross, cross_node_name: &name,
                    capacity: cap, game_server_list: proto::U32List::EMPTY }
            .encode_with(&list, &mut f).expect("fits");
        round_trip(&f);
        let (payload, _) = proto::parse_frame(&f, 65_535).expect("valid").expect("whole");
        let Message::CrossInfo(ci) = Message::decode(payload).expect("decodes") else {
            panic!("not CROSS_INFO");
        };
        prop_assert_eq!(ci.game_server_list.iter().collect::<Vec<_>>(), list);
        f.clear();
        Heartbeat { ts }.encode(&mut f);
        round_trip(&f);
        f.clear();
        StatusReport { online }.encode(&mut f);
        round_trip(&f);
    }

    #[test]
    fn login_messages_round_trip(
        code in any::<u8>(), time in any::<u32>(), hi in any::<u16>(), ht in any::<u16>(),
        cross in any::<u32>(), name in any_str(), plat in any_str(), pos in any::<u16>(),
        members in prop::collection::vec((any::<u32>(), any_str(), any::<u16>()), 0..40),
        entries in prop::collection::vec(any_str(), 0..40), version in any::<u32>(),
        last in any::<bool>(), op in 1u8..=2, flag in any::<u8>(), reason in any::<u8>(),
        ts in any::<u64>(),
    ) {
        let mut f = Vec::new();
        AuthResult { code, server_time: time, heartbeat_interval: hi, heartbeat_timeout: ht }.encode(&mut f);
        round_trip(&f);
        f.clear();
        CrossAssign { cross_server_id: cross, cross_node_name: &name, cross_plat: &plat, cross_pos: pos }
            .encode(&mut f).expect("fits");
        round_trip(&f);
        f.clear();
        CrossMembers::encode(
            members.iter().map(|(s, n, p)| Member { serv_id: *s, serv_name: n, cross_pos: *p }),
            &mut f,
        ).expect("fits");
        round_trip(&f);
        f.clear();
        Heartbeat { ts }.encode_ack(&mut f);
        round_trip(&f);
        f.clear();
        StatusPush { maintenance: flag }.encode(&mut f);
        round_trip(&f);
        f.clear();
        WhitelistSnapshot::encode(version, last, entries.iter().map(|s| s.as_str()), &mut f).expect("fits");
        round_trip(&f);
        f.clear();
        WhitelistDelta { version, op, entry: &name }.encode(&mut f).expect("fits");
        round_trip(&f);
        f.clear();
        Kick { reason }.encode(&mut f);
        round_trip(&f);
    }
}

// ---- the cluster under random interleavings ----

const TOKEN: &str = "prop-token";
const T0: u64 = 1_700_000_000;

#[derive(Debug, Clone)]
enum Event {
    Game {
        id: u32,
        plat: u8,
        report: Option<(u32, u16)>,
    },
    Cross {
        id: u32,
        plat: u8,
        cap: u16,
        list: Vec<u32>,
    },
    Heartbeat {
        pick: usize,
    },
    Disconnect {
        pick: usize,
    },
    Move {
        serv: u32,
        cross: u32,
        pos: u16,
    },
    Capacity {
        cross: u32,
        cap: u16,
    },
    Drain {
        cross: u32,
        on: bool,
    },
    Advance {
        ms: u64,
    },
    JournalFails,
}

fn event() -> impl Strategy<Value = Event> {
    let game_id = 1u32..=16;
    let cross_id = 101u32..=104;
    prop_oneof![
        4 => (game_id.clone(), 0u8..2, prop::option::of((cross_id.clone(), 0u16..6)))
            .prop_map(|(id, plat, report)| Event::Game { id, plat, report }),
        2 => (cross_id.clone(), 0u8..2, 0u16..5, prop::collection::vec(game_id.clone(), 0..4))
            .prop_map(|(id, plat, cap, list)| Event::Cross { id, plat, cap, list }),
        3 => any::<usize>().prop_map(|pick| Event::Heartbeat { pick }),
        3 => any::<usize>().prop_map(|pick| Event::Disconnect { pick }),
        2 => (game_id, cross_id.clone(), 0u16..6)
            .prop_map(|(serv, cross, pos)| Event::Move { serv, cross, pos }),
        1 => (cross_id.clone(), 0u16..6).prop_map(|(cross, cap)| Event::Capacity { cross, cap }),
        1 => (cross_id, any::<bool>()).prop_map(|(cross, on)| Event::Drain { cross, on }),
        1 => (1u64..5_000).prop_map(|ms| Event::Advance { ms }),
        1 => Just(Event::JournalFails),
    ]
}

#[derive(Default)]
struct Wire {
    closed: Vec<ConnId>,
}

impl Outbox for Wire {
    fn send(&mut self, _conn: ConnId, _frame: &[u8]) {}
    fn close(&mut self, conn: ConnId) {
        self.closed.push(conn);
    }
}

struct World {
    c: Cluster,
    wire: Wire,
    now: Now,
    next_conn: ConnId,
    /// Live connections: conn -> (node type, id).
    live: BTreeMap<ConnId, (u8, u32)>,
    /// When each game node last started waiting (event counter), for the FIFO check.
    waiting_since: HashMap<u32, u64>,
    step: u64,
}

impl World {
    fn new() -> World {
        let config = Config {
            token: TOKEN.into(),
            heartbeat_interval: 1,
            heartbeat_timeout: 3,
            default_capacity: 2,
            state_dir: None,
            admin_listen: None,
            ..Config::default()
        };
        let now = Now {
            mono_ms: 0,
            unix_secs: T0,
        };
        World {
            c: Cluster::new(&config, now),
            wire: Wire::default(),
            now,
            next_conn: 0,
            live: BTreeMap::new(),
            waiting_since: HashMap::new(),
            step: 0,
        }
    }

    fn feed(&mut self, conn: ConnId, frame: &[u8]) {
        let (payload, _) = proto::parse_frame(frame, 65_535)
            .expect("valid")
            .expect("whole");
        self.c
            .handle_frame(conn, payload, self.now, &mut self.wire, &mut NoHandler);
    }

    /// The reactor's end of turn: release closed sockets; sync the journal unless it fails.
    fn turn_end(&mut self, journal_ok: bool) {
        self.c
            .handle_timeout(self.now, &mut self.wire, &mut NoHandler);
        if !self.c.pending_journal().is_empty() {
            if journal_ok {
                self.c.journal_synced(&mut self.wire);
            } else {
                self.c.journal_failed();
            }
        }
        while let Some(conn) = self.wire.closed.pop() {
            if self.live.remove(&conn).is_some() {
                self.c
                    .closed(conn, self.now, &mut self.wire, &mut NoHandler);
            }
        }
    }

    fn login(&mut self, node_type: u8, id: u32) -> ConnId {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.c
            .open(conn, SocketAddr::from(([127, 0, 0, 1], 1000)), self.now);
        self.live.insert(conn, (node_type, id));
        let time = (T0 + self.now.mono_ms / 1000) as u32;
        let mut f = Vec::new();
        Auth {
            node_type,
            node_id: id,
            plat: "dev",
            time,
            sign: proto::auth::sign(id, time, TOKEN.as_bytes()),
        }
        .encode(&mut f)
        .expect("fits");
        self.feed(conn, &f);
        conn
    }

    fn apply(&mut self, e: &Event) -> Result<(), TestCaseError> {
        let queues_before: Vec<Vec<u32>> = ["p", "q"].iter().map(|p| self.c.waiting(p)).collect();
        self.step += 1;
        let plats = ["p", "q"];
        let mut journal_ok = true;
        match e {
            Event::Game { id, plat, report } => {
                let conn = self.login(1, *id);
                let (cross, pos) = report.unwrap_or((0, 0));
                let mut f = Vec::new();
                GameInfo {
                    serv_id: *id,
                    serv_name: "g",
                    open_time: 1,
                    cross_plat: plats[*plat as usize],
                    cross_server_id: cross,
                    cross_pos: pos,
                    addr: "a",
                }
                .encode(&mut f)
                .expect("fits");
                self.feed(conn, &f);
                self.waiting_since.insert(*id, self.step);
            }
            Event::Cross {
                id,
                plat,
                cap,
                list,
            } => {
                let conn = self.login(2, *id);
                let mut f = Vec::new();
                let name = format!("c{id}");
                CrossInfo {
                    id: *id,
                    cross_plat: plats[*plat as usize],
                    cross_server_id: *id,
                    cross_node_name: &name,
                    capacity: *cap,
                    game_server_list: proto::U32List::EMPTY,
                }
                .encode_with(list, &mut f)
                .expect("fits");
                self.feed(conn, &f);
            }
            Event::Heartbeat { pick } => {
                if let Some(&conn) = self.live.keys().nth(pick % self.live.len().max(1)) {
                    let mut f = Vec::new();
                    Heartbeat { ts: 1 }.encode(&mut f);
                    self.feed(conn, &f);
                }
            }
            Event::Disconnect { pick } => {
                if let Some(&conn) = self.live.keys().nth(pick % self.live.len().max(1)) {
                    self.live.remove(&conn);
                    self.c
                        .closed(conn, self.now, &mut self.wire, &mut NoHandler);
                }
            }
            Event::Move { serv, cross, pos } => {
                let _ = self.c.move_game(*serv, *cross, *pos, &mut self.wire);
            }
            Event::Capacity { cross, cap } => {
                let _ = self.c.set_cross_capacity(*cross, *cap, &mut self.wire);
            }
            Event::Drain { cross, on } => {
                let _ = self.c.set_cross_drain(*cross, *on, &mut self.wire);
            }
            Event::Advance { ms } => self.now.mono_ms += ms,
            Event::JournalFails => journal_ok = false,
        }
        self.turn_end(journal_ok);
        // FIFO: nodes that left a queue by being assigned from it are its oldest ones. (An
        // adoption by a cross node's list, an operator move or a new login may take any node.)
        let explicit: HashSet<u32> = match e {
            Event::Cross { list, .. } => list.iter().copied().collect(),
            Event::Move { serv, .. } => [*serv].into(),
            // A node logging in again leaves the queue and arrives anew.
            Event::Game { id, .. } => [*id].into(),
            _ => HashSet::new(),
        };
        for (before, plat) in queues_before.iter().zip(["p", "q"]) {
            let still: HashSet<u32> = self.c.waiting(plat).into_iter().collect();
            let assigned = |s: &u32| {
                self.c
                    .allocator()
                    .game(*s)
                    .is_some_and(|g| g.assignment.is_some())
            };
            let mut seen_waiting = false;
            for serv in before {
                if still.contains(serv) {
                    seen_waiting = true;
                } else if assigned(serv) && !explicit.contains(serv) {
                    prop_assert!(
                        !seen_waiting,
                        "{plat}: game {serv} was assigned before an older waiting node"
                    );
                }
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let alloc = self.c.allocator();
        // No slot twice; assignments agree with member lists both ways.
        let mut slots = HashSet::new();
        for (serv, g) in alloc.games() {
            if let Some((cross, pos)) = g.assignment {
                prop_assert!(slots.insert((cross, pos)), "slot {cross}/{pos} held twice");
                let members = &alloc
                    .cross(cross)
                    .expect("assigned cross has a record")
                    .members;
                prop_assert_eq!(members.get(&pos), Some(&serv));
            }
        }
        for (cross, rec) in alloc.crosses() {
            for (&pos, &serv) in &rec.members {
                prop_assert_eq!(
                    alloc.game(serv).and_then(|g| g.assignment),
                    Some((cross, pos))
                );
            }
        }
        // One connection per node, all of them live.
        let mut keys = HashSet::new();
        for n in self.c.online_nodes() {
            prop_assert!(keys.insert(n.key), "{} online twice", n.key);
            prop_assert!(self
                .live
                .values()
                .any(|&(t, id)| t == n.key.node_type as u8 && id == n.key.node_id));
            if let NodeDetails::Game { .. } = n.info {
                prop_assert!(alloc.game(n.key.node_id).is_some_and(|g| g.online));
            }
        }
        prop_assert_eq!(self.c.registered() <= self.live.len(), true);
        // Waiting queues: arrival order, online and unassigned only; nobody waits while a
        // cross node of the platform that takes new nodes has a free slot (state writable).
        for plat in ["p", "q"] {
            let queue = self.c.waiting(plat);
            if !queue.is_empty() && self.c.is_writable() {
                for (id, rec) in alloc.crosses() {
                    let same = rec.plat.is_some_and(|p| alloc.platforms.name(p) == plat);
                    if same && rec.online && !rec.draining {
                        prop_assert_eq!(
                            rec.free(),
                            0,
                            "cross {} has room while {} waits",
                            id,
                            plat
                        );
                    }
                }
            }
            let mut last = 0;
            for serv in queue {
                let g = alloc.game(serv).expect("record");
                prop_assert!(g.online && g.assignment.is_none() && g.is_waiting());
                let since = self.waiting_since[&serv];
                prop_assert!(since > last, "queue of {plat} out of arrival order");
                last = since;
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    #[test]
    fn random_interleavings_keep_the_invariants(events in prop::collection::vec(event(), 1..120)) {
        let mut w = World::new();
        for e in &events {
            w.apply(e)?;
            w.check()?;
        }
    }
}
