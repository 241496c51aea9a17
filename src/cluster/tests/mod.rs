//! The cluster on a virtual clock: no sockets, no sleeping.

use super::*;
use crate::proto::{
    self, Auth, AuthResult, CrossAssign, CrossInfo, CrossMembers, FrameError, GameInfo, Heartbeat,
    Kick, Message, StatusPush, StatusReport,
};
use crate::timer::TimerId;
use std::net::SocketAddr;

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
    fn node_online(&mut self, _ctx: &mut Context<'_>, node: NodeKey, _info: &ReportedInfo<'_>) {
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

mod admission;
mod allocation;
mod announce;
mod auth;
/// Batches in flight, event order of records, restored facts.
mod durable;
mod handler;
mod lists;
mod session;
