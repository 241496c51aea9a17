//! The messages the login node sends to nodes (0x8001..=0x80FF), with the borrowed list
//! views they decode into and the splitting of a whitelist snapshot over several frames.

use super::{cmd, put_list_and_end_frame};
use crate::proto::frame::{begin_frame, end_frame, put_fixed_frame, FrameTooLarge};
use crate::proto::wire::{put_str, put_u16, put_u32, DecodeError, Reader};
use std::fmt;

/// 0x8001 AUTH_RESULT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthResult {
    /// Raw result code (see [`AuthCode`](super::AuthCode)).
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
        let [t0, t1, t2, t3] = self.server_time.to_be_bytes();
        let [i0, i1] = self.heartbeat_interval.to_be_bytes();
        let [o0, o1] = self.heartbeat_timeout.to_be_bytes();
        let body = [self.code, t0, t1, t2, t3, i0, i1, o0, o1];
        put_fixed_frame(out, cmd::AUTH_RESULT, body);
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
        put_list_and_end_frame(out, start, members, |out, m| {
            put_u32(out, m.serv_id);
            put_str(out, m.serv_name);
            put_u16(out, m.cross_pos);
        })
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
        put_fixed_frame(out, cmd::STATUS_PUSH, [self.maintenance]);
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
    pub(super) fn encode_flag<'e>(
        version: u32,
        last: u8,
        entries: impl IntoIterator<Item = &'e str>,
        out: &mut Vec<u8>,
    ) -> Result<(), FrameTooLarge> {
        let start = begin_frame(out, cmd::WHITELIST_SNAPSHOT);
        put_u32(out, version);
        out.push(last);
        put_list_and_end_frame(out, start, entries, put_str)
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
        let finish = |out: &mut Vec<u8>, (start, _, count): (usize, usize, u16), last: bool| {
            out[start + 8] = last as u8;
            out[start + 9..start + 11].copy_from_slice(&count.to_be_bytes());
            // Cannot fail: an entry is added only while the payload stays within a frame.
            let fits = end_frame(out, start).is_ok();
            debug_assert!(fits, "a snapshot frame outgrew its checked length");
        };
        let begin = |out: &mut Vec<u8>| {
            let start = begin_frame(out, cmd::WHITELIST_SNAPSHOT);
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
    /// Raw reason (see [`KickReason`](super::KickReason)).
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
        put_fixed_frame(out, cmd::KICK, [self.reason]);
    }
}
