//! The messages of protocol v1 (contract section 4): one struct per command, decoded from a
//! body without allocating (strings and lists borrow the input) and encoded as whole frames
//! appended to a `Vec<u8>`.

use super::frame::{begin_frame, end_frame, split_payload, FrameTooLarge};
use super::wire::{put_str, put_u16, put_u32, put_u64, DecodeError, Reader};
use std::fmt;

/// Command numbers.
pub mod cmd {
    /// Node -> login: authenticate.
    pub const AUTH: u16 = 0x0001;
    /// Game node -> login: its info.
    pub const GAME_INFO: u16 = 0x0002;
    /// Cross node -> login: its info.
    pub const CROSS_INFO: u16 = 0x0003;
    /// Node -> login: heartbeat.
    pub const HEARTBEAT: u16 = 0x0004;
    /// Game node -> login: players online.
    pub const STATUS_REPORT: u16 = 0x0005;
    /// Login -> node: result of AUTH.
    pub const AUTH_RESULT: u16 = 0x8001;
    /// Login -> game node: its cross assignment.
    pub const CROSS_ASSIGN: u16 = 0x8002;
    /// Login -> cross node: its full member list.
    pub const CROSS_MEMBERS: u16 = 0x8003;
    /// Login -> node: heartbeat echo.
    pub const HEARTBEAT_ACK: u16 = 0x8004;
    /// Login -> game node: operator-set state.
    pub const STATUS_PUSH: u16 = 0x8005;
    /// Login -> game node: whitelist, possibly over several frames.
    pub const WHITELIST_SNAPSHOT: u16 = 0x8006;
    /// Login -> game node: one whitelist change.
    pub const WHITELIST_DELTA: u16 = 0x8007;
    /// Login -> node: kicked, the connection closes.
    pub const KICK: u16 = 0x80FF;
    /// First application-defined command.
    pub const APP_FIRST: u16 = 0x1000;
    /// Last application-defined command.
    pub const APP_LAST: u16 = 0x7FFF;

    /// True for the application-defined range `0x1000..=0x7FFF`.
    pub fn is_app(cmd: u16) -> bool {
        (APP_FIRST..=APP_LAST).contains(&cmd)
    }
}

/// Node types (contract section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeType {
    /// A game (logic) node.
    Game = 1,
    /// A cross-server node.
    Cross = 2,
}

impl NodeType {
    /// The node type for a wire value, if known.
    pub fn from_u8(v: u8) -> Option<NodeType> {
        match v {
            1 => Some(NodeType::Game),
            2 => Some(NodeType::Cross),
            _ => None,
        }
    }

    /// Lower-case name for logs and APIs.
    pub fn name(self) -> &'static str {
        match self {
            NodeType::Game => "game",
            NodeType::Cross => "cross",
        }
    }
}

/// AUTH_RESULT codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthCode {
    /// Registered.
    Ok = 0,
    /// Bad signature.
    BadSignature = 1,
    /// `time` outside the auth window.
    BadTime = 2,
    /// Already online and the duplicate policy is `reject`.
    Duplicate = 3,
    /// Peer address not allowed.
    AddressNotAllowed = 4,
    /// Server full.
    ServerFull = 5,
    /// Unknown node_type or malformed AUTH.
    BadRequest = 6,
    /// This login node is a standby of its group: try another configured login node.
    Standby = 7,
}

impl AuthCode {
    /// The code for a wire value, if known.
    pub fn from_u8(v: u8) -> Option<AuthCode> {
        Some(match v {
            0 => AuthCode::Ok,
            1 => AuthCode::BadSignature,
            2 => AuthCode::BadTime,
            3 => AuthCode::Duplicate,
            4 => AuthCode::AddressNotAllowed,
            5 => AuthCode::ServerFull,
            6 => AuthCode::BadRequest,
            7 => AuthCode::Standby,
            _ => return None,
        })
    }

    /// Short description for logs.
    pub fn describe(self) -> &'static str {
        match self {
            AuthCode::Ok => "ok",
            AuthCode::BadSignature => "bad signature",
            AuthCode::BadTime => "time outside auth window",
            AuthCode::Duplicate => "duplicate rejected",
            AuthCode::AddressNotAllowed => "address not allowed",
            AuthCode::ServerFull => "server full",
            AuthCode::BadRequest => "bad request",
            AuthCode::Standby => "standby: not the active login node of its group",
        }
    }
}

/// KICK reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickReason {
    /// Replaced by a newer login of the same node.
    Replaced = 1,
    /// Silent longer than heartbeat_timeout.
    HeartbeatTimeout = 2,
    /// An operator kicked it.
    Operator = 3,
    /// The login node is shutting down.
    Shutdown = 4,
    /// The node broke the protocol.
    ProtocolError = 5,
    /// This login node stopped being the active one of its group: connect to another.
    NotActive = 6,
}

impl KickReason {
    /// The reason for a wire value, if known.
    pub fn from_u8(v: u8) -> Option<KickReason> {
        Some(match v {
            1 => KickReason::Replaced,
            2 => KickReason::HeartbeatTimeout,
            3 => KickReason::Operator,
            4 => KickReason::Shutdown,
            5 => KickReason::ProtocolError,
            6 => KickReason::NotActive,
            _ => return None,
        })
    }

    /// Short description for logs.
    pub fn describe(self) -> &'static str {
        match self {
            KickReason::Replaced => "replaced by a newer login",
            KickReason::HeartbeatTimeout => "heartbeat timeout",
            KickReason::Operator => "operator kick",
            KickReason::Shutdown => "shutdown",
            KickReason::ProtocolError => "protocol error",
            KickReason::NotActive => "no longer the active login node of its group",
        }
    }
}

/// 0x0001 AUTH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth<'a> {
    /// Raw node type (1 game, 2 cross; others are answered with code 6).
    pub node_type: u8,
    /// Node id.
    pub node_id: u32,
    /// The node's own platform/channel name.
    pub plat: &'a str,
    /// Unix seconds when signed.
    pub time: u32,
    /// md5(decimal(node_id) ++ decimal(time) ++ token).
    pub sign: [u8; 16],
}

impl<'a> Auth<'a> {
    /// Decodes an AUTH body.
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        Ok(Auth {
            node_type: r.u8()?,
            node_id: r.u32()?,
            plat: r.str()?,
            time: r.u32()?,
            sign: r.md5()?,
        })
    }

    /// Appends the whole frame.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FrameTooLarge> {
        let start = begin_frame(out, cmd::AUTH);
        out.push(self.node_type);
        put_u32(out, self.node_id);
        put_str(out, self.plat);
        put_u32(out, self.time);
        out.extend_from_slice(&self.sign);
        end_frame(out, start)
    }
}

/// 0x8001 AUTH_RESULT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthResult {
    /// Raw result code (see [`AuthCode`]).
    pub code: u8,
    /// The login node's unix seconds.
    pub server_time: u32,
    /// Seconds between heartbeats the node should send.
    pub heartbeat_interval: u16,
    /// Seconds of silence after which the node is dropped.
    pub heartbeat_timeout: u16,
}

impl AuthResult {
    /// Decodes an AUTH_RESULT body.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        Ok(AuthResult {
            code: r.u8()?,
            server_time: r.u32()?,
            heartbeat_interval: r.u16()?,
            heartbeat_timeout: r.u16()?,
        })
    }

    /// Appends the whole frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0, 11, 0x80, 0x01, self.code]);
        put_u32(out, self.server_time);
        put_u16(out, self.heartbeat_interval);
        put_u16(out, self.heartbeat_timeout);
    }
}

/// 0x0002 GAME_INFO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GameInfo<'a> {
    /// Must equal node_id.
    pub serv_id: u32,
    /// Display name.
    pub serv_name: &'a str,
    /// Unix seconds the game server opened.
    pub open_time: u32,
    /// The cross platform it belongs to.
    pub cross_plat: &'a str,
    /// Its current cross assignment, 0 = none.
    pub cross_server_id: u32,
    /// Its slot in that cross node, 0 = none.
    pub cross_pos: u16,
    /// The address players use to reach it.
    pub addr: &'a str,
}

impl<'a> GameInfo<'a> {
    /// Decodes a GAME_INFO body.
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        Ok(GameInfo {
            serv_id: r.u32()?,
            serv_name: r.str()?,
            open_time: r.u32()?,
            cross_plat: r.str()?,
            cross_server_id: r.u32()?,
            cross_pos: r.u16()?,
            addr: r.str()?,
        })
    }

    /// Appends the whole frame.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FrameTooLarge> {
        let start = begin_frame(out, cmd::GAME_INFO);
        put_u32(out, self.serv_id);
        put_str(out, self.serv_name);
        put_u32(out, self.open_time);
        put_str(out, self.cross_plat);
        put_u32(out, self.cross_server_id);
        put_u16(out, self.cross_pos);
        put_str(out, self.addr);
        end_frame(out, start)
    }
}

/// A `list<u32>` borrowed from a body.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct U32List<'a> {
    raw: &'a [u8],
}

impl U32List<'static> {
    /// The empty list (for building a [`CrossInfo`] to encode with [`CrossInfo::encode_with`]).
    pub const EMPTY: U32List<'static> = U32List { raw: &[] };
}

impl<'a> U32List<'a> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.raw.len() / 4
    }

    /// True when the list has no elements.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The elements in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        self.raw
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }
}

impl fmt::Debug for U32List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// 0x0003 CROSS_INFO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossInfo<'a> {
    /// Must equal node_id.
    pub id: u32,
    /// Its cross platform.
    pub cross_plat: &'a str,
    /// The id game nodes store in their cross_server_id.
    pub cross_server_id: u32,
    /// What game nodes use to reach it.
    pub cross_node_name: &'a str,
    /// Most game nodes it serves; 0 = the login node's default.
    pub capacity: u16,
    /// serv_ids it currently serves.
    pub game_server_list: U32List<'a>,
}

impl<'a> CrossInfo<'a> {
    /// Decodes a CROSS_INFO body.
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let id = r.u32()?;
        let cross_plat = r.str()?;
        let cross_server_id = r.u32()?;
        let cross_node_name = r.str()?;
        let capacity = r.u16()?;
        let count = r.list_header(4)? as usize;
        let raw = r.bytes(count * 4)?;
        Ok(CrossInfo {
            id,
            cross_plat,
            cross_server_id,
            cross_node_name,
            capacity,
            game_server_list: U32List { raw },
        })
    }

    /// Appends the whole frame with `game_server_list` taken from `servers`.
    pub fn encode_with(&self, servers: &[u32], out: &mut Vec<u8>) -> Result<(), FrameTooLarge> {
        let start = begin_frame(out, cmd::CROSS_INFO);
        put_u32(out, self.id);
        put_str(out, self.cross_plat);
        put_u32(out, self.cross_server_id);
        put_str(out, self.cross_node_name);
        put_u16(out, self.capacity);
        if servers.len() > u16::MAX as usize {
            out.truncate(start);
            return Err(FrameTooLarge);
        }
        put_u16(out, servers.len() as u16);
        for s in servers {
            put_u32(out, *s);
        }
        end_frame(out, start)
    }

    /// Appends the whole frame, re-encoding the borrowed list.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FrameTooLarge> {
        let servers: Vec<u32> = self.game_server_list.iter().collect();
        self.encode_with(&servers, out)
    }
}

/// 0x0004 HEARTBEAT and 0x8004 HEARTBEAT_ACK share this body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Opaque to the login node; echoed unchanged.
    pub ts: u64,
}

impl Heartbeat {
    /// Decodes a HEARTBEAT or HEARTBEAT_ACK body.
    #[inline]
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        Ok(Heartbeat {
            ts: Reader::new(body).u64()?,
        })
    }

    /// Appends a HEARTBEAT frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0, 10, 0x00, 0x04]);
        put_u64(out, self.ts);
    }

    /// Appends a HEARTBEAT_ACK frame echoing this `ts`.
    #[inline]
    pub fn encode_ack(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0, 10, 0x80, 0x04]);
        put_u64(out, self.ts);
    }
}

/// 0x0005 STATUS_REPORT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusReport {
    /// Players online now.
    pub online: u32,
}

impl StatusReport {
    /// Decodes a STATUS_REPORT body.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        Ok(StatusReport {
            online: Reader::new(body).u32()?,
        })
    }

    /// Appends the whole frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0, 6, 0x00, 0x05]);
        put_u32(out, self.online);
    }
}

/// 0x8002 CROSS_ASSIGN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossAssign<'a> {
    /// The assigned cross node's cross_server_id.
    pub cross_server_id: u32,
    /// Its name (how to reach it).
    pub cross_node_name: &'a str,
    /// The cross node's own platform.
    pub cross_plat: &'a str,
    /// The slot, counting from 1.
    pub cross_pos: u16,
}

impl<'a> CrossAssign<'a> {
    /// Decodes a CROSS_ASSIGN body.
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        Ok(CrossAssign {
            cross_server_id: r.u32()?,
            cross_node_name: r.str()?,
            cross_plat: r.str()?,
            cross_pos: r.u16()?,
        })
    }

    /// Appends the whole frame.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FrameTooLarge> {
        let start = begin_frame(out, cmd::CROSS_ASSIGN);
        put_u32(out, self.cross_server_id);
        put_str(out, self.cross_node_name);
        put_str(out, self.cross_plat);
        put_u16(out, self.cross_pos);
        end_frame(out, start)
    }
}

/// One entry of CROSS_MEMBERS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member<'a> {
    /// The game node's serv_id.
    pub serv_id: u32,
    /// Its name; empty if it never connected to this login node.
    pub serv_name: &'a str,
    /// Its slot.
    pub cross_pos: u16,
}

/// 0x8003 CROSS_MEMBERS, as decoded: the members are read lazily.
#[derive(Clone, PartialEq, Eq)]
pub struct CrossMembers<'a> {
    count: u16,
    raw: &'a [u8],
}

impl<'a> CrossMembers<'a> {
    /// Decodes a CROSS_MEMBERS body; every member is validated here, so [`Self::iter`] cannot fail.
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let count = r.list_header(8)?;
        let start = r.remaining();
        for _ in 0..count {
            r.u32()?;
            r.str()?;
            r.u16()?;
        }
        // Only the list's own bytes: trailing bytes (ignored by the contract) must not make
        // two equal lists compare unequal.
        let raw = &start[..start.len() - r.remaining().len()];
        Ok(CrossMembers { count, raw })
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True when there are no members.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The members in order.
    pub fn iter(&self) -> impl Iterator<Item = Member<'a>> + 'a {
        let mut r = Reader::new(self.raw);
        (0..self.count).map_while(move |_| {
            Some(Member {
                serv_id: r.u32().ok()?,
                serv_name: r.str().ok()?,
                cross_pos: r.u16().ok()?,
            })
        })
    }

    /// Appends a whole frame listing `members`.
    pub fn encode<'m>(
        members: impl IntoIterator<Item = Member<'m>>,
        out: &mut Vec<u8>,
    ) -> Result<(), FrameTooLarge> {
        let start = begin_frame(out, cmd::CROSS_MEMBERS);
        let count_at = out.len();
        put_u16(out, 0);
        let mut count: usize = 0;
        for m in members {
            put_u32(out, m.serv_id);
            put_str(out, m.serv_name);
            put_u16(out, m.cross_pos);
            count += 1;
        }
        if count > u16::MAX as usize {
            out.truncate(start);
            return Err(FrameTooLarge);
        }
        out[count_at..count_at + 2].copy_from_slice(&(count as u16).to_be_bytes());
        end_frame(out, start)
    }
}

impl fmt::Debug for CrossMembers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// 0x8005 STATUS_PUSH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusPush {
    /// 1 = in maintenance.
    pub maintenance: u8,
}

impl StatusPush {
    /// Decodes a STATUS_PUSH body.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        Ok(StatusPush {
            maintenance: Reader::new(body).u8()?,
        })
    }

    /// Appends the whole frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0, 3, 0x80, 0x05, self.maintenance]);
    }
}

/// A `list<str>` borrowed from a body, validated when decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct StrList<'a> {
    count: u16,
    raw: &'a [u8],
}

impl<'a> StrList<'a> {
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let count = r.list_header(2)?;
        let start = r.remaining();
        for _ in 0..count {
            r.str()?;
        }
        // Only the list's own bytes (see `CrossMembers::decode`).
        let raw = &start[..start.len() - r.remaining().len()];
        Ok(StrList { count, raw })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True when the list has no entries.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let mut r = Reader::new(self.raw);
        (0..self.count).map_while(move |_| r.str().ok())
    }
}

impl fmt::Debug for StrList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// 0x8006 WHITELIST_SNAPSHOT (one frame of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhitelistSnapshot<'a> {
    /// Whitelist version.
    pub version: u32,
    /// 1 on the last frame of the snapshot.
    pub last: u8,
    /// The entries in this frame.
    pub entries: StrList<'a>,
}

impl<'a> WhitelistSnapshot<'a> {
    /// Decodes a WHITELIST_SNAPSHOT body.
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        Ok(WhitelistSnapshot {
            version: r.u32()?,
            last: r.u8()?,
            entries: StrList::decode(&mut r)?,
        })
    }

    /// Appends one frame holding `entries`.
    pub fn encode<'e>(
        version: u32,
        last: bool,
        entries: impl IntoIterator<Item = &'e str>,
        out: &mut Vec<u8>,
    ) -> Result<(), FrameTooLarge> {
        Self::encode_flag(version, last as u8, entries, out)
    }

    /// [`Self::encode`] with the `last` byte as it is (a decoded frame re-encodes exactly,
    /// whatever value its `last` had).
    fn encode_flag<'e>(
        version: u32,
        last: u8,
        entries: impl IntoIterator<Item = &'e str>,
        out: &mut Vec<u8>,
    ) -> Result<(), FrameTooLarge> {
        let start = begin_frame(out, cmd::WHITELIST_SNAPSHOT);
        put_u32(out, version);
        out.push(last);
        let count_at = out.len();
        put_u16(out, 0);
        let mut count: usize = 0;
        for e in entries {
            put_str(out, e);
            count += 1;
        }
        if count > u16::MAX as usize {
            out.truncate(start);
            return Err(FrameTooLarge);
        }
        out[count_at..count_at + 2].copy_from_slice(&(count as u16).to_be_bytes());
        end_frame(out, start)
    }

    /// Appends a whole snapshot as as many frames as it needs (each at most 65,535 bytes
    /// long, `last` = 1 on the final one). Entries longer than one frame can hold are skipped
    /// (the login node refuses them before they are stored). Returns the frames written.
    pub fn encode_split<'e>(
        version: u32,
        entries: impl IntoIterator<Item = &'e str>,
        out: &mut Vec<u8>,
    ) -> usize {
        // len field counts cmd (2) + version (4) + last (1) + count (2) + entries.
        const FIXED: usize = 2 + 4 + 1 + 2;
        let mut frames = 0;
        let mut open: Option<(usize, usize, u16)> = None; // (frame start, payload len, count)
        let finish = |out: &mut Vec<u8>, (start, len, count): (usize, usize, u16), last: bool| {
            out[start..start + 2].copy_from_slice(&(len as u16).to_be_bytes());
            out[start + 8] = last as u8;
            out[start + 9..start + 11].copy_from_slice(&count.to_be_bytes());
        };
        let begin = |out: &mut Vec<u8>| {
            let start = out.len();
            out.extend_from_slice(&[0, 0]);
            put_u16(out, cmd::WHITELIST_SNAPSHOT);
            put_u32(out, version);
            out.push(0);
            put_u16(out, 0);
            (start, FIXED, 0u16)
        };
        for e in entries {
            let need = 2 + e.len();
            if FIXED + need > u16::MAX as usize {
                continue;
            }
            let mut cur = match open.take() {
                Some(cur) if cur.1 + need <= u16::MAX as usize && cur.2 < u16::MAX => cur,
                Some(full) => {
                    finish(out, full, false);
                    frames += 1;
                    begin(out)
                }
                None => begin(out),
            };
            put_str(out, e);
            cur.1 += need;
            cur.2 += 1;
            open = Some(cur);
        }
        let cur = open.unwrap_or_else(|| begin(out));
        finish(out, cur, true);
        frames + 1
    }
}

/// 0x8007 WHITELIST_DELTA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhitelistDelta<'a> {
    /// Version after this change.
    pub version: u32,
    /// 1 add, 2 remove.
    pub op: u8,
    /// The entry.
    pub entry: &'a str,
}

impl<'a> WhitelistDelta<'a> {
    /// Decodes a WHITELIST_DELTA body.
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        Ok(WhitelistDelta {
            version: r.u32()?,
            op: r.u8()?,
            entry: r.str()?,
        })
    }

    /// Appends the whole frame.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FrameTooLarge> {
        let start = begin_frame(out, cmd::WHITELIST_DELTA);
        put_u32(out, self.version);
        out.push(self.op);
        put_str(out, self.entry);
        end_frame(out, start)
    }
}

/// 0x80FF KICK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kick {
    /// Raw reason (see [`KickReason`]).
    pub reason: u8,
}

impl Kick {
    /// Decodes a KICK body.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        Ok(Kick {
            reason: Reader::new(body).u8()?,
        })
    }

    /// Appends the whole frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0, 3, 0x80, 0xFF, self.reason]);
    }
}

/// Why a payload could not be decoded as a [`Message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageError {
    /// The command is not defined by protocol v1 and is not application-defined.
    UnknownCommand(u16),
    /// The body is malformed.
    Body(u16, DecodeError),
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::UnknownCommand(c) => write!(f, "unknown command {c:#06x}"),
            MessageError::Body(c, e) => write!(f, "command {c:#06x}: {e}"),
        }
    }
}

impl std::error::Error for MessageError {}

/// Any protocol-v1 message, in either direction, decoded from a frame payload.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Message<'a> {
    Auth(Auth<'a>),
    GameInfo(GameInfo<'a>),
    CrossInfo(CrossInfo<'a>),
    Heartbeat(Heartbeat),
    StatusReport(StatusReport),
    AuthResult(AuthResult),
    CrossAssign(CrossAssign<'a>),
    CrossMembers(CrossMembers<'a>),
    HeartbeatAck(Heartbeat),
    StatusPush(StatusPush),
    WhitelistSnapshot(WhitelistSnapshot<'a>),
    WhitelistDelta(WhitelistDelta<'a>),
    Kick(Kick),
    /// An application-defined command (0x1000..=0x7FFF) with its raw body.
    App {
        cmd: u16,
        body: &'a [u8],
    },
}

impl<'a> Message<'a> {
    /// Decodes a frame payload (cmd + body).
    pub fn decode(payload: &'a [u8]) -> Result<Self, MessageError> {
        let (c, body) = split_payload(payload);
        let e = |err| MessageError::Body(c, err);
        Ok(match c {
            cmd::AUTH => Message::Auth(Auth::decode(body).map_err(e)?),
            cmd::GAME_INFO => Message::GameInfo(GameInfo::decode(body).map_err(e)?),
            cmd::CROSS_INFO => Message::CrossInfo(CrossInfo::decode(body).map_err(e)?),
            cmd::HEARTBEAT => Message::Heartbeat(Heartbeat::decode(body).map_err(e)?),
            cmd::STATUS_REPORT => Message::StatusReport(StatusReport::decode(body).map_err(e)?),
            cmd::AUTH_RESULT => Message::AuthResult(AuthResult::decode(body).map_err(e)?),
            cmd::CROSS_ASSIGN => Message::CrossAssign(CrossAssign::decode(body).map_err(e)?),
            cmd::CROSS_MEMBERS => Message::CrossMembers(CrossMembers::decode(body).map_err(e)?),
            cmd::HEARTBEAT_ACK => Message::HeartbeatAck(Heartbeat::decode(body).map_err(e)?),
            cmd::STATUS_PUSH => Message::StatusPush(StatusPush::decode(body).map_err(e)?),
            cmd::WHITELIST_SNAPSHOT => {
                Message::WhitelistSnapshot(WhitelistSnapshot::decode(body).map_err(e)?)
            }
            cmd::WHITELIST_DELTA => {
                Message::WhitelistDelta(WhitelistDelta::decode(body).map_err(e)?)
            }
            cmd::KICK => Message::Kick(Kick::decode(body).map_err(e)?),
            c if cmd::is_app(c) => Message::App { cmd: c, body },
            c => return Err(MessageError::UnknownCommand(c)),
        })
    }

    /// Appends this message as a whole frame.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FrameTooLarge> {
        match self {
            Message::Auth(m) => m.encode(out)?,
            Message::GameInfo(m) => m.encode(out)?,
            Message::CrossInfo(m) => m.encode(out)?,
            Message::Heartbeat(m) => m.encode(out),
            Message::StatusReport(m) => m.encode(out),
            Message::AuthResult(m) => m.encode(out),
            Message::CrossAssign(m) => m.encode(out)?,
            Message::CrossMembers(m) => CrossMembers::encode(m.iter(), out)?,
            Message::HeartbeatAck(m) => m.encode_ack(out),
            Message::StatusPush(m) => m.encode(out),
            Message::WhitelistSnapshot(m) => {
                WhitelistSnapshot::encode_flag(m.version, m.last, m.entries.iter(), out)?
            }
            Message::WhitelistDelta(m) => m.encode(out)?,
            Message::Kick(m) => m.encode(out),
            Message::App { cmd, body } => {
                let start = begin_frame(out, *cmd);
                out.extend_from_slice(body);
                end_frame(out, start)?
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(m: Message<'_>) {
        let mut out = Vec::new();
        m.encode(&mut out).expect("encodes");
        let (payload, used) = crate::proto::frame::parse_frame(&out, 65535)
            .expect("valid")
            .expect("whole");
        assert_eq!(used, out.len());
        assert_eq!(Message::decode(payload).expect("decodes"), m);
    }

    #[test]
    fn every_message_round_trips() {
        round_trip(Message::Auth(Auth {
            node_type: 1,
            node_id: 5,
            plat: "p",
            time: 9,
            sign: [7; 16],
        }));
        round_trip(Message::Heartbeat(Heartbeat { ts: u64::MAX }));
        round_trip(Message::HeartbeatAck(Heartbeat { ts: 1 }));
        round_trip(Message::StatusReport(StatusReport { online: 3 }));
        round_trip(Message::AuthResult(AuthResult {
            code: 5,
            server_time: 1,
            heartbeat_interval: 2,
            heartbeat_timeout: 3,
        }));
        round_trip(Message::CrossAssign(CrossAssign {
            cross_server_id: 1,
            cross_node_name: "n",
            cross_plat: "p",
            cross_pos: 2,
        }));
        round_trip(Message::StatusPush(StatusPush { maintenance: 1 }));
        round_trip(Message::WhitelistDelta(WhitelistDelta {
            version: 2,
            op: 2,
            entry: "x",
        }));
        round_trip(Message::Kick(Kick { reason: 4 }));
        round_trip(Message::App {
            cmd: 0x1234,
            body: b"abc",
        });
        let mut out = Vec::new();
        CrossMembers::encode(
            [Member {
                serv_id: 1,
                serv_name: "a",
                cross_pos: 1,
            }],
            &mut out,
        )
        .expect("fits");
        let m = CrossMembers::decode(&out[4..]).expect("decodes");
        round_trip(Message::CrossMembers(m));
        let mut out = Vec::new();
        WhitelistSnapshot::encode(4, true, ["a", "bc"], &mut out).expect("fits");
        let m = WhitelistSnapshot::decode(&out[4..]).expect("decodes");
        assert_eq!(m.entries.iter().collect::<Vec<_>>(), ["a", "bc"]);
        round_trip(Message::WhitelistSnapshot(m));
    }

    #[test]
    fn unknown_and_malformed_are_errors() {
        assert_eq!(
            Message::decode(&[0x00, 0x09]),
            Err(MessageError::UnknownCommand(9))
        );
        assert_eq!(
            Message::decode(&[0x90, 0x00]),
            Err(MessageError::UnknownCommand(0x9000))
        );
        assert_eq!(
            Message::decode(&[0x00, 0x04, 1]),
            Err(MessageError::Body(4, DecodeError::Truncated))
        );
        // A member list claiming 2 members with bytes for one.
        let mut out = Vec::new();
        CrossMembers::encode(
            [Member {
                serv_id: 1,
                serv_name: "",
                cross_pos: 1,
            }],
            &mut out,
        )
        .expect("fits");
        out[5] = 2;
        assert!(CrossMembers::decode(&out[4..]).is_err());
    }

    #[test]
    fn cross_members_too_large_is_refused_not_corrupted() {
        let name = "x".repeat(1000);
        let members = (0..100).map(|i| Member {
            serv_id: i,
            serv_name: &name,
            cross_pos: i as u16,
        });
        let mut out = vec![1, 2, 3];
        assert_eq!(CrossMembers::encode(members, &mut out), Err(FrameTooLarge));
        assert_eq!(out, [1, 2, 3]);
    }
}

#[cfg(test)]
mod snapshot_split_tests {
    use super::*;
    use crate::proto::parse_frame;

    fn frames(bytes: &[u8]) -> Vec<(u32, u8, Vec<String>)> {
        let mut at = 0;
        let mut out = Vec::new();
        while at < bytes.len() {
            let (payload, used) = parse_frame(&bytes[at..], 65_535)
                .expect("valid")
                .expect("whole");
            let Message::WhitelistSnapshot(s) = Message::decode(payload).expect("decode") else {
                panic!("not a snapshot");
            };
            out.push((
                s.version,
                s.last,
                s.entries.iter().map(str::to_string).collect(),
            ));
            at += used;
        }
        out
    }

    #[test]
    fn trailing_bytes_after_a_list_do_not_change_its_value() {
        // Found by the `messages` fuzz target: the lists kept the trailing bytes.
        let mut plain = Vec::new();
        WhitelistSnapshot::encode(9, false, ["a"], &mut plain).expect("fits");
        let mut padded = plain.clone();
        padded.extend_from_slice(&[1, 2, 3]);
        let len = (padded.len() - 2) as u16;
        padded[..2].copy_from_slice(&len.to_be_bytes());
        let decode = |b: &[u8]| {
            let (payload, _) = parse_frame(b, 65_535).expect("valid").expect("whole");
            let m = Message::decode(payload).expect("decodes");
            let mut out = Vec::new();
            m.encode(&mut out).expect("encodes");
            out
        };
        assert_eq!(decode(&padded), plain);
        let (pp, _) = parse_frame(&padded, 65_535).expect("valid").expect("whole");
        let (qp, _) = parse_frame(&plain, 65_535).expect("valid").expect("whole");
        assert_eq!(
            Message::decode(pp).expect("decodes"),
            Message::decode(qp).expect("decodes")
        );
        let mut members = Vec::new();
        CrossMembers::encode(
            [Member {
                serv_id: 1,
                serv_name: "s",
                cross_pos: 2,
            }],
            &mut members,
        )
        .expect("fits");
        let mut padded = members.clone();
        padded.push(7);
        let len = (padded.len() - 2) as u16;
        padded[..2].copy_from_slice(&len.to_be_bytes());
        let (pp, _) = parse_frame(&padded, 65_535).expect("valid").expect("whole");
        let (qp, _) = parse_frame(&members, 65_535)
            .expect("valid")
            .expect("whole");
        assert_eq!(
            Message::decode(pp).expect("decodes"),
            Message::decode(qp).expect("decodes")
        );
    }

    #[test]
    fn a_snapshot_re_encodes_its_last_byte_as_it_came() {
        // Found by the `messages` fuzz target: a `last` of 5 came back as 0.
        let mut frame = Vec::new();
        WhitelistSnapshot::encode_flag(0, 5, [], &mut frame).expect("fits");
        let (payload, _) = parse_frame(&frame, 65_535).expect("valid").expect("whole");
        let m = Message::decode(payload).expect("decodes");
        let mut again = Vec::new();
        m.encode(&mut again).expect("encodes");
        assert_eq!(again, frame);
    }

    #[test]
    fn an_empty_snapshot_is_one_last_frame() {
        let mut out = Vec::new();
        assert_eq!(WhitelistSnapshot::encode_split(3, [], &mut out), 1);
        assert_eq!(frames(&out), vec![(3, 1, vec![])]);
    }

    #[test]
    fn a_large_snapshot_spans_frames_with_last_only_on_the_final_one() {
        let entries: Vec<String> = (0..100_000).map(|i| format!("player-{i:08}")).collect();
        let mut out = Vec::new();
        let n = WhitelistSnapshot::encode_split(7, entries.iter().map(|s| s.as_str()), &mut out);
        let got = frames(&out);
        assert_eq!(got.len(), n);
        assert!(n > 1);
        let lasts: Vec<u8> = got.iter().map(|f| f.1).collect();
        assert_eq!(lasts.iter().filter(|&&l| l == 1).count(), 1);
        assert_eq!(*lasts.last().expect("frames"), 1);
        let all: Vec<String> = got.into_iter().flat_map(|f| f.2).collect();
        assert_eq!(all, entries);
    }
}
